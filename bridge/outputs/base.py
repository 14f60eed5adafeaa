"""Frame outputs: the publisher contract, the group, and the registry that builds outputs by spec.

A spec names an output: ``syphon``, ``spout``, ``ndi``, ``shm``, ``file:PATH.mp4``,
``png:DIR`` or ``auto`` (Syphon on macOS, Spout on Windows, NDI elsewhere). Every backend is
imported only when it is built, so a platform-bound library (Syphon, Spout) is never loaded
where it cannot run; asking for it there raises an :class:`~engine.errors.OutputError` that
names the spec, the platform and the outputs that work here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from bridge.outputs import publisher
from bridge.outputs.group import OutputGroup, OutputStats
from bridge.outputs.publisher import (
    FramePublisher,
    MissingBackendError,
    PublisherBase,
    validate_frame,
)
from engine.errors import OutputError

__all__ = [
    "FramePublisher",
    "OutputGroup",
    "OutputInfo",
    "OutputStats",
    "PublisherBase",
    "available_outputs",
    "create_output",
    "register_output",
    "resolve_auto",
    "validate_frame",
]

# factory(target, name=..., audio_path=..., **options): target is the text after "kind:"
OutputFactory = Callable[..., FramePublisher]

_PLATFORM_NAMES = {"darwin": "macOS", "win32": "Windows", "linux": "Linux"}


class OutputInfo(NamedTuple):
    """One row of :func:`available_outputs`: can this kind of output run here, and why (not)."""

    kind: str
    available: bool
    reason: str


@dataclass(frozen=True)
class _Kind:
    kind: str
    factory: OutputFactory
    platforms: frozenset[str] | None
    description: str
    target: str | None  # what follows "kind:" (e.g. "PATH.mp4"), None when nothing may
    probe: Callable[[], str] | None  # returns a short "what runs" note, raises when missing


_REGISTRY: dict[str, _Kind] = {}


def register_output(
    kind: str,
    factory: OutputFactory,
    platforms: Iterable[str] | None = None,
    description: str = "",
    *,
    target: str | None = None,
    probe: Callable[[], str] | None = None,
) -> None:
    """Make ``kind`` buildable by :func:`create_output`.

    ``factory(target, name=..., audio_path=..., **options)`` builds the publisher; ``platforms``
    lists the ``sys.platform`` values it runs on (None: all); ``target`` names what the spec
    carries after ``kind:`` (None: the spec is the bare kind); ``probe`` checks that the native
    library is present (raises :class:`MissingBackendError` if not, else returns a short note).
    """
    key = kind.strip().lower()
    if not key or ":" in key or key == "auto":
        raise OutputError(f"cannot register an output kind named {kind!r}")
    platform_set = frozenset(platforms) if platforms is not None else None
    _REGISTRY[key] = _Kind(key, factory, platform_set, description, target, probe)


def resolve_auto(platform: str | None = None) -> str:
    """The kind ``auto`` stands for: Syphon on macOS, Spout on Windows, NDI elsewhere."""
    platform = publisher.current_platform() if platform is None else platform
    return {"darwin": "syphon", "win32": "spout"}.get(platform, "ndi")


def _platform_label(platform: str) -> str:
    return _PLATFORM_NAMES.get(platform, platform)


def _status(entry: _Kind, platform: str) -> tuple[bool, str]:
    """(True, what runs) when ``entry`` can run here, else (False, why not)."""
    if entry.platforms is not None and platform not in entry.platforms:
        needs = " or ".join(sorted(_platform_label(p) for p in entry.platforms))
        return False, f"needs {needs} (this is {_platform_label(platform)})"
    if entry.probe is None:
        return True, entry.description
    try:
        note = entry.probe()
    except MissingBackendError as exc:
        return False, str(exc)
    return True, f"{entry.description} ({note})" if note else entry.description


def available_outputs() -> list[OutputInfo]:
    """Every registered kind with whether it runs here and why (for ``hamba devices``)."""
    platform = publisher.current_platform()
    return [OutputInfo(entry.kind, *_status(entry, platform)) for entry in _REGISTRY.values()]


def _alternatives(excluding: str) -> str:
    platform = publisher.current_platform()
    usable = [
        entry.kind + (f":{entry.target}" if entry.target else "")
        for entry in _REGISTRY.values()
        if entry.kind != excluding and _status(entry, platform)[0]
    ]
    return "outputs that work here: " + (", ".join(usable) if usable else "none")


def _parse(spec: str) -> tuple[str, str | None, str]:
    """(kind, target after "kind:", label for messages); ``auto`` resolved."""
    text = spec.strip()
    kind, sep, target = text.partition(":")
    kind = kind.strip().lower()
    if not kind:
        raise OutputError(f"empty output spec {spec!r}; {_alternatives('')}")
    label = repr(text)
    if kind == "auto" and not sep:
        kind = resolve_auto()
        label = f"'auto' ({kind} on {_platform_label(publisher.current_platform())})"
    return kind, (target.strip() if sep else None), label


def create_output(
    spec: str,
    *,
    name: str = "hambaMetal",
    audio_path: str | Path | None = None,
    **options: Any,
) -> FramePublisher:
    """Build the output a spec names; ``name`` is the engine instance as consumers see it.

    ``audio_path`` is the source audio a file output muxes in; ``options`` go to the backend
    (e.g. ``pixel_format="uyvy"`` for NDI, ``slots=4`` for shared memory).
    """
    kind, target, label = _parse(spec)
    platform = publisher.current_platform()
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise OutputError(
            f"unknown output {label} on {_platform_label(platform)}; " + _alternatives(kind)
        )
    if entry.target is None and target is not None:
        raise OutputError(f"output {label}: {kind!r} takes no argument; write {kind!r}")
    if entry.target is not None and not target:
        raise OutputError(f"output {label} needs a target: write '{kind}:{entry.target}'")
    runs, reason = _status(entry, platform)
    if not runs:
        raise OutputError(f"output {label} is not available: {reason}; {_alternatives(kind)}")
    factory = entry.factory.load() if isinstance(entry.factory, _Lazy) else entry.factory
    try:
        inspect.signature(factory).bind(target, name=name, audio_path=audio_path, **options)
    except TypeError as exc:
        raise OutputError(f"output {label} does not take the options {sorted(options)}") from exc
    try:
        return factory(target, name=name, audio_path=audio_path, **options)
    except MissingBackendError as exc:
        raise OutputError(f"output {label}: {exc}; {_alternatives(kind)}") from exc


class _Lazy:
    """A function of a backend module, imported when first needed."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def load(self) -> Callable[..., Any]:
        func: Callable[..., Any] = getattr(importlib.import_module(self.module), self.attr)
        return func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


# kind, backend module in bridge.outputs, platforms, description, spec target, has probe()
_BUILTINS: tuple[tuple[str, str, list[str] | None, str, str | None, bool], ...] = (
    ("syphon", "syphon", ["darwin"], "Syphon server (Metal) for macOS hosts", None, True),
    ("spout", "spout", ["win32"], "Spout sender (OpenGL) for Windows hosts", None, True),
    ("ndi", "ndi", None, "NDI source 'HOST (name)' on the network", None, True),
    ("shm", "shm", None, "shared memory 'hamba_<name>' (docs/shared-memory.md)", None, False),
    ("file", "video", None, "video file (H.264 mp4) with the source audio", "PATH.mp4", True),
    ("png", "images", None, "PNG sequence frame_000000.png ... in a folder", "DIR", False),
)


def _register_builtins() -> None:
    for kind, module, platforms, description, target, has_probe in _BUILTINS:
        backend = f"bridge.outputs.{module}"
        register_output(
            kind,
            _Lazy(backend, "build"),
            platforms,
            description,
            target=target,
            probe=_Lazy(backend, "probe") if has_probe else None,
        )


_register_builtins()
