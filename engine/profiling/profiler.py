"""Per-stage timing and memory for the render loop, on cuda, mps or cpu.

``with get_profiler().profile("unet"): ...`` times a stage:

- on cuda, with CUDA events recorded on the current stream; nothing waits for the GPU inside
  the frame: finished events are collected as later stages end, and the rest when the timings
  are read (:meth:`Profiler.summary` and friends synchronise on them then);
- on mps, with ``torch.mps.synchronize()`` around the stage and a wall clock;
- on cpu, with ``time.perf_counter``.

Disabled (the default), :meth:`Profiler.profile` returns one shared no-op context and
:meth:`Profiler.record` returns at once, so instrumented code costs nothing measurable
(``benchmarks/bench_latent_prompt.py`` measures it). Recording is thread-safe.

Statistics: ``count``, ``mean`` and ``max`` cover every sample since the last :meth:`reset`;
``p50`` and ``p95`` the last ``window`` samples of each stage. A stage's ``share`` is its total
time over the sum of all stages' totals (a stage nested in another counts in both).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from engine.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from engine.config import ProfilingConfig

DEFAULT_WINDOW = 10_000

# the one context every disabled profile() hands out: no allocation, no clock read
_NULL: AbstractContextManager[None] = contextlib.nullcontext()


@dataclass
class _Stage:
    window: int
    count: int = 0
    total: float = 0.0
    max: float = 0.0
    recent: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.recent.append(seconds)


class _WallTimer:
    """Times a stage with perf_counter; on mps, synchronises the device around it."""

    __slots__ = ("_name", "_profiler", "_start", "_sync")

    def __init__(self, profiler: Profiler, name: str, sync: bool) -> None:
        self._profiler = profiler
        self._name = name
        self._sync = sync
        self._start = 0.0

    def __enter__(self) -> None:
        if self._sync:
            _mps_synchronize()
        self._start = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        if self._sync:
            _mps_synchronize()
        self._profiler.record(self._name, time.perf_counter() - self._start)


class _CudaTimer:
    """Brackets a stage with two CUDA events; the profiler resolves them later."""

    __slots__ = ("_device", "_name", "_profiler", "_start")

    def __init__(self, profiler: Profiler, name: str, device: torch.device) -> None:
        self._profiler = profiler
        self._name = name
        self._device = device
        self._start: Any = None

    def __enter__(self) -> None:
        import torch

        self._start = torch.cuda.Event(enable_timing=True)
        self._start.record(torch.cuda.current_stream(self._device))

    def __exit__(self, *exc_info: object) -> None:
        import torch

        end = torch.cuda.Event(enable_timing=True)
        end.record(torch.cuda.current_stream(self._device))
        self._profiler._add_pending(self._name, self._start, end)


def _mps_synchronize() -> None:
    import torch

    torch.mps.synchronize()


def _process_rss() -> tuple[int | None, int | None]:
    """The process's resident memory now and at its peak, in bytes (None where unknown)."""
    current = None
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024
                break
    peak = None
    try:
        import resource
    except ImportError:  # windows
        return current, peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # linux reports kilobytes, macos bytes
    peak = int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024
    # the two are read at different moments and rounded differently
    return current, peak if current is None else max(peak, current)


class Profiler:
    """Collects per-stage durations and reports them (see the module docstring).

    ``device`` picks the clock: a cuda device uses CUDA events, ``mps`` synchronises, anything
    else (or None) uses the CPU's perf_counter. ``window`` bounds the samples kept per stage
    for the percentiles.
    """

    def __init__(
        self,
        enabled: bool = False,
        device: torch.device | str | None = None,
        *,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if window < 1:
            raise ConfigError(f"profiler: window must be at least 1, got {window}")
        self.window = window
        self._enabled = enabled
        self._lock = threading.Lock()
        self._stages: dict[str, _Stage] = {}
        self._pending: deque[tuple[str, Any, Any]] = deque()
        self._started = time.perf_counter()
        self._kind = "cpu"
        self._device: Any = None
        self.set_device(device)

    # -- switches -----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def enable(self) -> None:
        """Start recording."""
        self._enabled = True

    def disable(self) -> None:
        """Stop recording; what was recorded stays readable."""
        self._enabled = False

    @property
    def device(self) -> str:
        """The clock in use: ``cpu``, ``mps`` or a cuda device such as ``cuda:0``."""
        return str(self._device) if self._kind == "cuda" else self._kind

    def set_device(self, device: torch.device | str | None) -> None:
        """Choose the clock for the stages that follow (see the class docstring).

        An unknown device, or a cuda or mps device this machine lacks, is a
        :class:`ConfigError` naming it.
        """
        name = "cpu" if device is None else str(device)
        kind = name.split(":", 1)[0]
        if kind not in {"cpu", "cuda", "mps"}:
            raise ConfigError(f"profiler: device {name!r} is not cpu, cuda, cuda:N or mps")
        self._device = None
        if kind != "cpu":
            import torch

            available = (
                torch.cuda.is_available() if kind == "cuda" else torch.backends.mps.is_available()
            )
            if not available:
                raise ConfigError(f"profiler: device {name!r} is not available on this machine")
            if kind == "cuda":
                resolved = torch.device(name)
                index = torch.cuda.current_device() if resolved.index is None else resolved.index
                self._device = torch.device("cuda", index)
        self._kind = kind

    # -- recording ----------------------------------------------------------------------------

    def profile(self, name: str) -> AbstractContextManager[None]:
        """A context that times its body as stage ``name`` (a shared no-op when disabled)."""
        if not self._enabled:
            return _NULL
        if self._kind == "cuda":
            return _CudaTimer(self, name, self._device)
        return _WallTimer(self, name, sync=self._kind == "mps")

    def record(self, name: str, seconds: float) -> None:
        """Add one duration (seconds) measured elsewhere to stage ``name``."""
        if not self._enabled:
            return
        with self._lock:
            self._stage(name).add(float(seconds))

    def _stage(self, name: str) -> _Stage:
        stage = self._stages.get(name)
        if stage is None:
            stage = self._stages[name] = _Stage(self.window)
        return stage

    def _add_pending(self, name: str, start: Any, end: Any) -> None:
        with self._lock:
            self._pending.append((name, start, end))
        self._resolve(wait=False)

    def _resolve(self, *, wait: bool) -> None:
        """Turn finished CUDA event pairs into durations; with ``wait``, all of them."""
        with self._lock:
            while self._pending:
                name, start, end = self._pending[0]
                if wait:
                    end.synchronize()
                elif not end.query():
                    break
                self._pending.popleft()
                # elapsed_time is in milliseconds
                self._stage(name).add(start.elapsed_time(end) / 1000.0)

    # -- reading ------------------------------------------------------------------------------

    def stages(self) -> list[str]:
        """The stage names recorded so far, in the order they first appeared."""
        self._resolve(wait=True)
        with self._lock:
            return list(self._stages)

    def get_avg_time(self, name: str) -> float:
        """The mean duration of stage ``name`` in seconds; 0.0 for a stage never recorded
        (a stage that has not run yet has spent no time; :meth:`stages` lists the known ones)."""
        self._resolve(wait=True)
        with self._lock:
            stage = self._stages.get(name)
            return stage.total / stage.count if stage and stage.count else 0.0

    def memory(self) -> dict[str, Any]:
        """Memory now: process RSS and its peak, and the device's peak (cuda) or current (mps)
        allocation, in bytes; None where the platform does not tell."""
        rss, rss_peak = _process_rss()
        device_bytes = None
        device_measure = None
        if self._kind == "cuda":
            import torch

            device_bytes = int(torch.cuda.max_memory_allocated(self._device))
            device_measure = "peak allocated"
        elif self._kind == "mps":
            import torch

            device_bytes = int(torch.mps.current_allocated_memory())
            device_measure = "current allocated"
        return {
            "rss_bytes": rss,
            "rss_peak_bytes": rss_peak,
            "device": self.device,
            "device_bytes": device_bytes,
            "device_measure": device_measure,
        }

    def summary(self) -> dict[str, Any]:
        """Everything as plain data: per-stage statistics (ms), memory and the conditions."""
        self._resolve(wait=True)
        with self._lock:
            snapshot = {
                name: (s.count, s.total, s.max, np.fromiter(s.recent, dtype=np.float64))
                for name, s in self._stages.items()
            }
        grand_total = sum(total for _, total, _, _ in snapshot.values())
        stages: dict[str, dict[str, float | int]] = {}
        for name, (count, total, longest, recent) in snapshot.items():
            p50, p95 = np.percentile(recent, [50, 95]) if recent.size else (0.0, 0.0)
            stages[name] = {
                "count": count,
                "total_s": total,
                "mean_ms": 1000.0 * total / count if count else 0.0,
                "p50_ms": 1000.0 * float(p50),
                "p95_ms": 1000.0 * float(p95),
                "max_ms": 1000.0 * longest,
                "share": total / grand_total if grand_total > 0 else 0.0,
            }
        return {
            "enabled": self._enabled,
            "device": self.device,
            "window": self.window,
            "wall_s": time.perf_counter() - self._started,
            "stages": stages,
            "memory": self.memory(),
        }

    def print_summary(self, file: TextIO | None = None) -> None:
        """Print a table: stage, count, mean, p50, p95, max (ms) and share; then memory."""
        out = sys.stdout if file is None else file
        info = self.summary()
        stages = info["stages"]
        if not stages:
            state = "enabled" if info["enabled"] else "disabled"
            print(f"profiler ({info['device']}, {state}): no stages recorded", file=out)
            return
        width = max(5, *(len(name) for name in stages))
        columns = ("count", "mean ms", "p50 ms", "p95 ms", "max ms")
        header = f"{'stage':<{width}}  {columns[0]:>7}  " + "  ".join(
            f"{c:>9}" for c in columns[1:]
        )
        header += f"  {'share':>6}"
        print(f"profiler ({info['device']})", file=out)
        print(header, file=out)
        print("-" * len(header), file=out)
        for name, s in stages.items():
            print(
                f"{name:<{width}}  {s['count']:>7d}  {s['mean_ms']:>9.3f}  {s['p50_ms']:>9.3f}  "
                f"{s['p95_ms']:>9.3f}  {s['max_ms']:>9.3f}  {100 * s['share']:>5.1f}%",
                file=out,
            )
        print(_memory_line(info["memory"]), file=out)

    def export_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`summary` and the run's conditions as JSON; returns the path.

        A path that cannot be written is a :class:`ConfigError` naming it.
        """
        target = Path(path)
        data = self.summary()
        data["conditions"] = conditions()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"profiler: cannot write {target} ({exc.strerror or exc})") from None
        return target

    def reset(self) -> None:
        """Forget every recorded stage (and, on cuda, the device's peak memory)."""
        with self._lock:
            self._stages.clear()
            self._pending.clear()
            self._started = time.perf_counter()
        if self._kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self._device)


def _memory_line(memory: dict[str, Any]) -> str:
    def mib(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 2**20:.1f} MiB"

    line = f"memory: rss {mib(memory['rss_bytes'])} (peak {mib(memory['rss_peak_bytes'])})"
    if memory["device_bytes"] is not None:
        line += f", {memory['device']} {memory['device_measure']} {mib(memory['device_bytes'])}"
    return line


def conditions() -> dict[str, Any]:
    """Where and when figures were taken: time, Python, platform, cores, torch, load."""
    torch = sys.modules.get("torch")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "load_average": list(load) if load is not None else None,
    }


_profiler: Profiler | None = None
_profiler_lock = threading.Lock()


def get_profiler() -> Profiler:
    """The process-wide profiler (created disabled, on the cpu clock, on first use)."""
    global _profiler
    if _profiler is None:
        with _profiler_lock:
            if _profiler is None:
                _profiler = Profiler()
    return _profiler


def configure_profiler(
    config: ProfilingConfig, device: torch.device | str | None = None
) -> Profiler:
    """Point the process-wide profiler at ``device`` and switch it as ``config.enabled`` says."""
    profiler = get_profiler()
    profiler.set_device(device)
    if config.enabled:
        profiler.enable()
    else:
        profiler.disable()
    return profiler
