"""The live-tunable parameters: thread-safe, latest value wins, read at frame boundaries.

Writers (the OSC server) call :meth:`ControlStore.update`; the render loop calls
:meth:`ControlStore.snapshot` once per frame and uses that immutable value for the whole frame,
so controls change between frames and never inside one. The lock guards only the swap of one
reference, never any rendering or I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from engine.config import format_validation_error, preset_values
from engine.errors import ControlError, HambaError
from osc_schema.controls import LiveControls

# where a preset's stream settings land among the live controls
_PRESET_TO_CONTROL: dict[tuple[str, str], str] = {
    ("stream", "temporal_blend_ratio"): "blend",
    ("stream", "similarity_threshold"): "similarity",
    ("stream", "enable_temporal_coherence"): "coherence",
}


def preset_controls(name: str) -> dict[str, Any]:
    """The live controls a preset sets (its name included); ConfigError for an unknown name."""
    values: dict[str, Any] = {"preset": name}
    for section, fields in preset_values(name).items():
        for field, value in fields.items():
            control = _PRESET_TO_CONTROL.get((section, field))
            if control is not None:
                values[control] = value
    return values


Listener = Callable[[LiveControls, frozenset[str]], None]


@dataclass(frozen=True)
class ControlSnapshot:
    """The controls at one moment and the version counter they carry."""

    version: int
    values: LiveControls


class ControlStore:
    """Holds the current :class:`LiveControls`; updates are validated and atomic."""

    def __init__(self, initial: LiveControls | None = None) -> None:
        self._snapshot = ControlSnapshot(0, initial or LiveControls())
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def snapshot(self) -> ControlSnapshot:
        """The latest controls; a single reference read, safe from any thread."""
        return self._snapshot

    @property
    def values(self) -> LiveControls:
        return self._snapshot.values

    def update(self, changes: Mapping[str, Any], *, source: str = "") -> LiveControls:
        """Apply several changes at once; all or nothing.

        A ``preset`` change also sets the live controls that preset defines (see
        :func:`preset_controls`), unless the same update gives them explicitly.

        Raises :class:`ControlError` naming the field (and ``source``, e.g. the OSC address)
        when a value is invalid; the state is then unchanged.
        """
        changes = dict(changes)
        preset = changes.get("preset")
        if isinstance(preset, str):
            try:
                implied = preset_controls(preset)
            except HambaError as exc:
                raise ControlError(f"{source or 'preset'}: {exc}") from None
            # explicit values in the same update win over the preset's
            changes = {**implied, **changes}
        with self._lock:
            current = self._snapshot
            data = current.values.model_dump()
            unknown = sorted(set(changes) - set(data))
            if unknown:
                where = f"{source}: " if source else ""
                raise ControlError(f"{where}unknown control {', '.join(unknown)}")
            data.update(changes)
            try:
                new_values = LiveControls.model_validate(data)
            except ValidationError as exc:
                where = f"{source}: " if source else ""
                raise ControlError(f"{where}{format_validation_error(exc)}") from None
            self._snapshot = ControlSnapshot(current.version + 1, new_values)
            listeners = list(self._listeners)
        changed = frozenset(
            k for k in changes if getattr(current.values, k) != getattr(new_values, k)
        )
        for listener in listeners:
            listener(new_values, changed)
        return new_values

    def set(self, name: str, value: Any, *, source: str = "") -> LiveControls:
        """Change one control (see :meth:`update`)."""
        return self.update({name: value}, source=source)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(values, changed_names)`` after every update (on the writer's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
