"""Rate-limited logging for the OSC services (the helper lives in :mod:`engine.logs`)."""

from engine.logs import LogThrottle

__all__ = ["LogThrottle"]
