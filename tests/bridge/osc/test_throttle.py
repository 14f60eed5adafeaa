"""Rate-limited logging, on a clock the test moves by hand."""

from __future__ import annotations

import logging

import pytest

from bridge.osc.throttle import LogThrottle


def test_burst_per_window_then_a_count_of_what_was_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("test.throttle"), burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        written = [throttle.warning("bad %d", i) for i in range(10)]
        now[0] += 1.0
        written.append(throttle.warning("bad %d", 10))
    assert written == [True] * 3 + [False] * 7 + [True]
    assert [r.getMessage() for r in caplog.records] == [
        "bad 0",
        "bad 1",
        "bad 2",
        "bad 10 (7 similar messages suppressed)",
    ]
