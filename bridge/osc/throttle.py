"""Rate-limited logging: a flood of bad messages must not flood the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class LogThrottle:
    """Logs at most ``burst`` records per ``interval`` seconds; counts and reports the rest.

    Safe to call from several threads; the lock guards two counters, never the logging call.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._burst = burst
        self._interval = interval
        self._lock = threading.Lock()
        self._window = -float("inf")
        self._count = 0
        self._suppressed = 0

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log unless this window's quota is spent; True when the record was written."""
        now = self._clock()
        with self._lock:
            if now - self._window >= self._interval:
                self._window = now
                self._count = 0
            self._count += 1
            if self._count > self._burst:
                self._suppressed += 1
                return False
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message = f"{message} ({suppressed} similar messages suppressed)"
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, message, *args)
