"""One Link scenario, run inside a private network namespace (see netns.py): prints JSON.

``python -m tests.bridge.link.scenario MODE TMP`` with MODE follow or lead (auto's rules are
checked without a daemon, in session_checks.py). The process is the test's Link peer
(peer.py: LinkPython-extern used directly, with its own clock conversion, so a mistake in the
daemon's conversion cannot cancel out) and it starts a real ``hamba run`` subprocess with
``--link MODE`` in the same namespace. Feedback datagrams are stamped by the kernel on arrival
(SO_TIMESTAMPNS), so a busy test process does not blur the timings. The last line on stdout is
a JSON object of measurements; the test asserts on them.

The daemon's frame ``i`` is due at ``t0 + i / fps``, where ``t0`` is when its music clock
starts (it logs it, on the same system-wide monotonic clock). A cross-check
estimates ``t0`` from the feedback too: the median of (arrival - i / fps) over the frames of
the last second; the two must roughly agree (the daemon renders early by its render-latency
estimate, generous at first, so frames of the first seconds arrive some tens of ms early).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import socket
import statistics
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_packet import OscPacket

from tests.bridge.daemon_harness import DaemonUnderTest, start_daemon, wait_for
from tests.bridge.link.peer import Peer
from tests.engine.audio.signals import click_track, tones, write_audio

FPS = 20.0
QUANTUM = 4.0
CLICK_BPM = 120.0
CLICK_OFFSET = 0.25
SR = 22050

# SO_TIMESTAMPNS: the kernel's receive time (CLOCK_REALTIME) in the ancillary data
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@dataclass
class Recorder:
    """Feedback datagrams with their kernel arrival times (``time.monotonic()`` seconds)."""

    sock: socket.socket = field(
        default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    records: list[tuple[float, str, list[Any]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            arrival = time.monotonic()
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", payload[:16])
                    arrival = seconds + nanos / 1e9 - (time.time() - time.monotonic())
            for timed in OscPacket(data).messages:
                message = timed.message
                with self.lock:
                    self.records.append((arrival, message.address, list(message.params)))

    def snapshot(self) -> list[tuple[float, str, list[Any]]]:
        with self.lock:
            return list(self.records)

    def latest(self, address: str) -> tuple[float, list[Any]] | None:
        for arrival, got, params in reversed(self.snapshot()):
            if got == address:
                return arrival, params
        return None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=1)
        self.sock.close()


def frames_and_beats(
    records: list[tuple[float, str, list[Any]]],
) -> tuple[list[tuple[float, int]], list[int]]:
    """(arrival, index) of every frame, and the indices of the frames that carried a beat."""
    frames: list[tuple[float, int]] = []
    beats: list[int] = []
    for arrival, address, params in records:
        if address == "/hamba/status/frame":
            frames.append((arrival, int(params[0])))
        elif address == "/hamba/audio/beat" and frames:
            beats.append(frames[-1][1])  # a frame's beat follows its frame message
    return frames, beats


_ORIGIN = re.compile(r"music clock: time 0 at ([0-9.]+) s")


def frame_origin(recorder: Recorder, daemon: DaemonUnderTest) -> dict[str, float]:
    """``t0`` as the daemon logged it, the feedback's estimate of it from the last second of
    frames and that estimate's spread (p90 - p10)."""
    end = time.monotonic()
    frames, _ = frames_and_beats([r for r in recorder.snapshot() if r[0] >= end - 1.0])
    offsets = sorted(arrival - index / FPS for arrival, index in frames)
    spread = offsets[int(0.9 * (len(offsets) - 1))] - offsets[int(0.1 * (len(offsets) - 1))]
    logged = _ORIGIN.findall(daemon.log.read_text())
    if len(logged) != 1:
        raise SystemExit(f"the daemon logged {len(logged)} music clock origins")
    return {"t0": float(logged[0]), "estimate": statistics.median(offsets), "spread": spread}


def max_gap(frames: list[tuple[float, int]], start: float, end: float) -> float:
    """The longest time without a frame between two wall times."""
    times = [start] + [a for a, _ in frames if start <= a <= end] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def click_file(tmp: Path) -> Path:
    clicks, _ = click_track(CLICK_BPM, 16.0, SR, offset=CLICK_OFFSET)
    drone = tones([220.0], 16.0, SR, amplitude=0.05)
    return write_audio(tmp / "click120.wav", clicks + drone, SR)


def start(tmp: Path, mode: str, recorder: Recorder, *extra: str) -> DaemonUnderTest:
    return start_daemon(
        tmp,
        # no OSCQuery: its mDNS goodbye can hold the exit for seconds, and Link needs none of it
        [
            "--audio",
            str(click_file(tmp)),
            "--link",
            mode,
            "--quantum",
            str(QUANTUM),
            "--no-oscquery",
            *extra,
        ],
        name=f"link{uuid.uuid4().hex[:8]}",
        fps=FPS,
        feedback_port=recorder.port,
    )


def first_frame(recorder: Recorder, daemon: DaemonUnderTest) -> float:
    arrival, _ = wait_for(
        lambda: recorder.latest("/hamba/status/frame"),
        180,
        "the first frame",
        daemon.proc,
        daemon.log,
    )
    return float(arrival)


def tempo_reported(recorder: Recorder, bpm: float, after: float) -> Callable[[], float | None]:
    """A probe: the arrival of the first frame after ``after`` whose picture and Link tempi are
    both within 0.01 BPM of ``bpm``."""

    def probe() -> float | None:
        picture: float | None = None
        for arrival, address, params in recorder.snapshot():
            if arrival < after:
                continue
            if address == "/hamba/audio/tempo":
                picture = float(params[0])
            elif (
                address == "/hamba/link/tempo"
                and picture is not None
                and abs(picture - bpm) < 0.01
                and abs(float(params[0]) - bpm) < 0.01
            ):
                return arrival
        return None

    return probe


# -- follow -----------------------------------------------------------------------------------


def follow(tmp: Path) -> dict[str, Any]:
    """Peer at 128 first; the daemon follows; tempo change; a second peer joins and leaves."""
    peer = Peer(128.0)
    recorder = Recorder()
    daemon = start(tmp, "follow", recorder)
    try:
        started = first_frame(recorder, daemon)
        locked = wait_for(
            tempo_reported(recorder, 128.0, started), 5, "128 BPM", daemon.proc, daemon.log
        )
        # the picture's beats over three seconds (checked against the peer's grid below)
        window_start = time.monotonic()
        time.sleep(3.0)
        window_end = time.monotonic()
        frames, beats = frames_and_beats(
            [r for r in recorder.snapshot() if window_start <= r[0] <= window_end]
        )
        state = peer.state()  # the 128 BPM grid, before the change

        # the peer changes the tempo: how long until the picture follows
        changed = time.monotonic()
        peer.set_tempo(132.0)
        followed = wait_for(
            tempo_reported(recorder, 132.0, changed), 5, "132 BPM", daemon.proc, daemon.log
        )

        # a second peer joins and leaves, then the first leaves: the render goes on
        churn_start = time.monotonic()
        second = Peer(90.0)
        wait_for(
            lambda: peer.peers >= 1 and second.peers >= 1,
            5,
            "the second peer",
            daemon.proc,
            daemon.log,
        )
        joined_peers = wait_for(
            lambda: (v := recorder.latest("/hamba/link/peers")) and v[1][0] == 2 and v,
            5,
            "two peers at the daemon",
            daemon.proc,
            daemon.log,
        )[1][0]
        second.leave()
        wait_for(
            lambda: (v := recorder.latest("/hamba/link/peers")) and v[1][0] == 1,
            5,
            "the second peer gone",
            daemon.proc,
            daemon.log,
        )
        peer.leave()
        wait_for(
            lambda: (v := recorder.latest("/hamba/link/peers")) and v[1][0] == 0,
            5,
            "no peers",
            daemon.proc,
            daemon.log,
        )
        time.sleep(0.5)
        churn_end = time.monotonic()
        churn_frames, _ = frames_and_beats(
            [r for r in recorder.snapshot() if churn_start <= r[0] <= churn_end]
        )
        source = recorder.latest("/hamba/status/beat_source")
        origin = frame_origin(recorder, daemon)
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop(timeout=60)  # the exit (interpreter GC) is slow on a busy machine
        recorder.close()
    t0 = origin["t0"]
    offsets = []
    for index in beats:
        position = state.beatAtTime(peer.micros(t0 + index / FPS), QUANTUM)
        # seconds from the frame's start to the nearest beat of the peer's grid
        offsets.append((round(position) - position) * 60.0 / state.tempo())
    first = math.ceil(state.beatAtTime(peer.micros(t0 + frames[0][1] / FPS), QUANTUM))
    last = math.ceil(state.beatAtTime(peer.micros(t0 + (frames[-1][1] + 1) / FPS), QUANTUM))
    log = daemon.log.read_text()
    return {
        "lock_s": locked - started,
        "follow_change_s": followed - changed,
        "frame_period_s": 1.0 / FPS,
        "origin_estimate_error_s": origin["estimate"] - t0,
        "origin_spread_s": origin["spread"],
        "beat_offsets_s": offsets,
        "beat_frames": len(beats),
        "grid_beats": last - first,
        "peers_while_joined": joined_peers,
        "churn_frames": len(churn_frames),
        "churn_seconds": churn_end - churn_start,
        "churn_max_gap_s": max_gap(churn_frames, churn_start, churn_end),
        "beat_source": source[1][0] if source else None,
        "alive_after_churn": alive,
        "exit_code": code,
        "traceback": "Traceback" in log,
    }


# -- lead -------------------------------------------------------------------------------------


def lead(tmp: Path) -> dict[str, Any]:
    """Peer at 90 first; the daemon leads it to the click track's 120 BPM and its beats. The
    picture takes its beat from the session it leads (``--beat-source link``)."""
    peer = Peer(90.0)
    recorder = Recorder()
    daemon = start(tmp, "lead", recorder, "--beat-source", "link")
    try:
        started = first_frame(recorder, daemon)
        deadline = started + 5.0
        locked: float | None = None
        while time.monotonic() < deadline:
            if abs(peer.tempo - CLICK_BPM) <= 1.0 and peer.peers >= 1:
                locked = time.monotonic()
                break
            time.sleep(0.005)
        if locked is None:
            raise SystemExit(f"the peer's tempo stayed at {peer.tempo}\n{daemon.log.read_text()}")
        # one poll of the leader to move the beats too, then the peer is watched for 3 s
        time.sleep(0.3)
        window_start = time.monotonic()
        tempi = []
        while time.monotonic() < window_start + 3.0:
            tempi.append(peer.tempo)
            time.sleep(0.05)
        window_end = time.monotonic()
        origin = frame_origin(recorder, daemon)
        source = recorder.latest("/hamba/status/beat_source")
        picture = recorder.latest("/hamba/audio/tempo")
        t0 = origin["t0"]
        clicks = t0 + CLICK_OFFSET + np.arange(0, 16.0 * CLICK_BPM / 60.0) * 60.0 / CLICK_BPM
        errors = []
        for wall in peer.beat_walls(window_start, window_end, QUANTUM):
            nearest = clicks[np.argmin(np.abs(clicks - wall))]
            errors.append(wall - float(nearest))
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop(timeout=60)  # the exit (interpreter GC) is slow on a busy machine
        recorder.close()
        peer.leave()
    log = daemon.log.read_text()
    return {
        "lock_s": locked - started,
        "tempo_min": min(tempi),
        "tempo_max": max(tempi),
        "phase_errors_s": errors,
        "beat_source": source[1][0] if source else None,
        "picture_tempo": picture[1][0] if picture else None,
        "origin_estimate_error_s": origin["estimate"] - t0,
        "origin_spread_s": origin["spread"],
        "alive": alive,
        "exit_code": code,
        "traceback": "Traceback" in log,
    }


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "follow": follow,
    "lead": lead,
}

if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(SCENARIOS[mode](folder)))
