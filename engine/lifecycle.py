"""Things with a lifetime (servers, audio streams, outputs): context-manager mixins, and closing
several of them at once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TypeVar

_S = TypeVar("_S", bound="StartsOnEnter")
_C = TypeVar("_C", bound="ClosesOnExit")


class StartsOnEnter:
    """``with thing:`` calls ``thing.start()`` on entry and ``thing.stop()`` however it ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ClosesOnExit:
    """``with thing:`` calls ``thing.close()`` on the way out, however the block ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def close_concurrently(
    steps: Sequence[tuple[str, Callable[[], None]]],
    timeout: float,
    log: logging.Logger,
) -> list[str]:
    """Run the ``(name, close)`` steps at once, each on its own thread; wait ``timeout`` at most.

    A shutdown then takes as long as its slowest step, not the sum of them. A step that raises
    is logged and the others go on; one still running at the deadline is left behind (its
    thread is a daemon thread: it cannot keep the process alive) and named in the result.
    """

    def run(name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - one part failing to close must not stop the others
            log.error("closing %s failed: %s: %s", name, type(exc).__name__, exc)

    threads = [
        threading.Thread(target=run, args=(name, step), name=f"close {name}", daemon=True)
        for name, step in steps
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [name for (name, _), thread in zip(steps, threads, strict=True) if thread.is_alive()]
    if left:
        log.error("still closing after %.1f s, left behind: %s", timeout, ", ".join(left))
    return left
