"""Log hygiene: repeated messages rate-limited, and libraries' noise that no user can act on muted.

:class:`LogThrottle` rate-limits what our own code logs; :class:`RateLimitFilter` does the same
for records a library logs itself (attach it to that library's logger); :func:`add_filter_once`
attaches a filter without stacking copies; :func:`quiet_unused_image_processors` mutes the
one transformers warning the engine triggers without using what it is about, and
:func:`quiet_hub_symlink_deprecation` the huggingface_hub warning diffusers triggers on every
hub lookup.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

Clock = Callable[[], float]
_F = TypeVar("_F", bound=logging.Filter)


class _Quota:
    """At most ``burst`` events per ``interval`` seconds; counts the ones it turns away."""

    def __init__(self, burst: int, interval: float, clock: Clock) -> None:
        if burst < 1 or interval <= 0:
            raise ValueError(f"a log quota needs burst >= 1 and interval > 0 ({burst}, {interval})")
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._window = -float("inf")
        self._count = 0
        self._suppressed = 0

    def take(self) -> int | None:
        """None when this window's quota is spent; else how many were suppressed since the last."""
        now = self._clock()
        with self._lock:
            if now - self._window >= self._interval:
                self._window = now
                self._count = 0
            self._count += 1
            if self._count > self._burst:
                self._suppressed += 1
                return None
            suppressed, self._suppressed = self._suppressed, 0
            return suppressed


def _with_count(message: str, suppressed: int) -> str:
    return f"{message} ({suppressed} similar messages suppressed)" if suppressed else message


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
        clock: Clock = time.monotonic,
    ) -> None:
        self._logger = logger
        self._quota = _Quota(burst, interval, clock)

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log unless this window's quota is spent; True when the record was written."""
        suppressed = self._quota.take()
        if suppressed is None:
            return False
        self._logger.log(level, _with_count(message, suppressed), *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any) -> bool:
        return self.log(logging.ERROR, message, *args)


class RateLimitFilter(logging.Filter):
    """Lets through at most ``burst`` matching records per ``interval`` s; counts the others.

    For messages a library logs itself: attach it to the logger the library logs on (a logger's
    filters see only records logged on that very logger). The next record let through says how
    many were held back; :attr:`matched` counts every matching record. Records that do not
    match pass untouched. Messages longer than ``max_chars`` are cut (a library may put a whole
    datagram into one).
    """

    def __init__(
        self,
        matches: Callable[[logging.LogRecord], bool],
        *,
        burst: int = 1,
        interval: float = 10.0,
        max_chars: int = 300,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__()
        self._matches = matches
        self._quota = _Quota(burst, interval, clock)
        self._max_chars = max_chars
        self.matched = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._matches(record):
            return True
        self.matched += 1
        suppressed = self._quota.take()
        if suppressed is None:
            return False
        message = record.getMessage()
        if len(message) > self._max_chars:
            message = message[: self._max_chars] + "..."
        record.msg, record.args = _with_count(message, suppressed), None
        return True


class MuteFilter(logging.Filter):
    """Drops the records ``matches`` picks (counted in :attr:`muted`), lets the rest through."""

    def __init__(self, matches: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self._matches = matches
        self.muted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self._matches(record):
            self.muted += 1
            return False
        return True


_installed: dict[tuple[str, str], logging.Filter] = {}
_installed_lock = threading.Lock()


def add_filter_once(logger_name: str, key: str, make: Callable[[], _F]) -> _F:
    """Attach ``make()`` to the named logger ("" is the root) unless ``key`` is there; return it."""
    with _installed_lock:
        existing = _installed.get((logger_name, key))
        if existing is not None:
            return cast(_F, existing)
        made = make()
        logging.getLogger(logger_name).addFilter(made)
        _installed[(logger_name, key)] = made
        return made


# transformers 5 falls back to a PIL image processor when torchvision is missing and warns once
# per class; diffusers' pipeline modules import CLIPImageProcessor (safety checker) and
# SiglipImageProcessor (ip-adapter) at import time, and the engine uses neither
_IMAGE_PROCESSOR_LOGGER = "transformers.utils.import_utils"


def _is_image_processor_fallback(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "ImageProcessor` requires torchvision (not installed); falling back to" in message


def quiet_unused_image_processors() -> MuteFilter:
    """Mute transformers' "requires torchvision ... falling back" warnings; nothing else."""
    return add_filter_once(
        _IMAGE_PROCESSOR_LOGGER,
        "image-processor-fallback",
        lambda: MuteFilter(_is_image_processor_fallback),
    )


# diffusers' config loader passes ``local_dir_use_symlinks`` to ``hf_hub_download`` on every
# lookup of a hub id (even offline), and huggingface_hub 1.x warns that it is ignored: the
# argument is diffusers', not the user's, so the warning tells a user nothing they can act on
HUB_SYMLINK_DEPRECATION = r"The `local_dir_use_symlinks` argument is deprecated"


def quiet_hub_symlink_deprecation() -> None:
    """Ignore huggingface_hub's ``local_dir_use_symlinks`` deprecation warning; nothing else."""
    warnings.filterwarnings(
        "ignore",
        message=HUB_SYMLINK_DEPRECATION,
        category=UserWarning,
        module=r"huggingface_hub\.",
    )
