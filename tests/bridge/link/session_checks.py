"""LinkSession against a raw Link peer, without a daemon: run inside a network namespace.

``python -m tests.bridge.link.session_checks`` prints one JSON object. The raw peer
(peer.py) uses LinkPython-extern directly, with its own clock conversion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bridge.beats.base import BeatGrid
from bridge.link.session import LinkSession
from tests.bridge.link.peer import Peer

QUANTUM = 4.0
# how much older the session a peer joins is, so that Link keeps it (see follow_reads_the_session)
SESSION_HEAD_START = 3.0


def wait(probe: Callable[[], bool], timeout: float = 5.0) -> float | None:
    """Seconds until ``probe()`` holds, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def follow_reads_the_session() -> dict[str, Any]:
    peer = Peer(97.0)
    # when two sessions meet, Link keeps the one older by more than half a second (its
    # Sessions::handleSuccessfulMeasurement; closer than that, the lower session id wins): after
    # a 1 s head start the newcomer's session won 3 times in 6 here, after 3 s never in 6
    time.sleep(SESSION_HEAD_START)
    session = LinkSession("follow", quantum=QUANTUM)
    session.start()
    try:
        # Link carries the tempo as microseconds per beat: 97 BPM reads back a hair off
        joined = wait(lambda: session.peers == 1 and abs(session.reading(0).tempo - 97) < 0.01)
        # the session's beat position at a few wall times, against the raw peer's
        errors = []
        for ahead in (0.0, 0.137, 0.5, 1.3):
            wall = time.monotonic() + ahead
            ours = session.reading(wall).position
            theirs = peer.state().beatAtTime(peer.micros(wall), QUANTUM)
            # Link shares the phase within a bar, not the beat count: peers' beat values may
            # differ by whole bars (quanta)
            errors.append(abs((ours - theirs + QUANTUM / 2) % QUANTUM - QUANTUM / 2))
        values = session.feedback_values()
        return {
            "joined_s": joined,
            "position_errors": errors,
            "following": session.following,
            "feedback": {k: list(v) for k, v in values.items()},
        }
    finally:
        session.stop()
        peer.leave()


def lead_moves_the_session() -> dict[str, Any]:
    peer = Peer(90.0)
    # a grid at 123 BPM with a beat 0.2 s from now
    grid = BeatGrid(60.0 / 123.0, time.monotonic() + 0.2)
    session = LinkSession("lead", quantum=QUANTUM, tempo=123.0, grid=lambda: grid)
    session.start()
    try:
        joined = wait(lambda: peer.peers == 1)
        locked = wait(lambda: abs(peer.tempo - 123.0) < 0.01)
        time.sleep(0.2)  # a few polls
        state = peer.state()
        errors = []
        for k in range(20, 28):
            beat_wall = grid.anchor + k * grid.period
            position = state.beatAtTime(peer.micros(beat_wall), QUANTUM)
            errors.append((position - round(position)) * grid.period)
        return {"joined_s": joined, "locked_s": locked, "beat_errors_s": errors}
    finally:
        session.stop()
        peer.leave()


def auto_switches() -> dict[str, Any]:
    grid = BeatGrid(60.0 / 110.0, time.monotonic())
    session = LinkSession("auto", quantum=QUANTUM, tempo=110.0, grid=lambda: grid)
    session.start()
    events: dict[str, Any] = {"alone_following": session.following}
    try:
        # a peer joining an older session takes that session's tempo (Link's rule, above)
        time.sleep(SESSION_HEAD_START)
        peer = Peer(80.0)
        events["joined_s"] = wait(lambda: session.peers == 1)
        time.sleep(0.3)
        events["joiner_tempo"] = peer.tempo
        events["following_after_join"] = session.following
        peer.set_tempo(140.0)
        events["follow_s"] = wait(lambda: session.following)
        events["reading_tempo"] = session.reading(time.monotonic()).tempo
        peer.leave()
        events["lead_again_s"] = wait(lambda: not session.following)
        events["tempo_after"] = wait(
            lambda: abs(session.reading(time.monotonic()).tempo - 110.0) < 0.01
        )
        return events
    finally:
        session.stop()


if __name__ == "__main__":
    print(
        json.dumps(
            {
                "follow": follow_reads_the_session(),
                "lead": lead_moves_the_session(),
                "auto": auto_switches(),
            }
        )
    )
