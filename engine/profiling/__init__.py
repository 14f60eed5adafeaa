"""Per-stage timing and memory."""

from engine.profiling.profiler import get_profiler

__all__ = ["get_profiler"]
