"""Context-manager mixins for things with a lifetime (servers, audio streams, outputs)."""

from __future__ import annotations

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
