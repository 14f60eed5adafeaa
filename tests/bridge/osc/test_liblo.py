"""Interoperability with a C implementation: liblo's oscsend and oscdump (Debian liblo-tools).

CI installs liblo-tools; on a machine without it these tests skip naming the package, and in
CI they fail (tests/requirements.py).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import threading
import time

import pytest

from bridge.osc.feedback import FeedbackSender
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from tests.bridge.osc.helpers import music_state, wait_for
from tests.requirements import require_commands


@pytest.fixture(autouse=True)
def liblo_tools() -> None:
    require_commands("oscsend", "oscdump", apt="liblo-tools")


def oscsend(*args: str) -> None:
    subprocess.run(["oscsend", *args], check=True, timeout=10, capture_output=True)


def test_oscsend_over_udp_and_tcp(store: ControlStore, server: OscServer) -> None:
    oscsend("127.0.0.1", str(server.port), "/hamba/blend", "f", "0.25")
    oscsend("127.0.0.1", str(server.port), "/hamba/pause", "T")
    oscsend("127.0.0.1", str(server.port), "/hamba/prompt/chroma", "is", "4", "liblo was here")
    wait_for(lambda: store.values.chroma_prompts[4] == "liblo was here")
    assert (store.values.blend, store.values.pause) == (0.25, True)
    oscsend(f"osc.tcp://127.0.0.1:{server.tcp_port}", "/hamba/seed", "i", "77")
    wait_for(lambda: store.values.seed == 77)
    assert server.stats.rejected == 0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_oscdump_reads_the_feedback() -> None:
    port = free_udp_port()
    dump = subprocess.Popen(
        ["oscdump", "-L", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        # oscdump prints "<timetag> <address> <types> <values>": keep what follows the time tag
        for line in dump.stdout or ():
            lines.put(line.strip().split(" ", 1)[-1])

    threading.Thread(target=pump, daemon=True).start()
    sender = FeedbackSender([("127.0.0.1", port)])
    state = music_state(3, beat=True, beat_count=8, energy=0.5, tempo=96.0)
    expected = {
        "/hamba/audio/beat i 8",
        "/hamba/audio/energy f 0.500000",
        "/hamba/audio/tempo f 96.000000",
        "/hamba/audio/chroma ffffffffffff" + " 0.250000" * 12,
        "/hamba/status/fps f 30.000000",
        "/hamba/status/frame i 3",
    }
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    try:
        # oscdump takes a moment to bind (it may catch a frame halfway): frames go out until
        # every message of one has been printed
        while not expected <= seen:
            sender.send_frame(state, fps=30.0, frame=3)
            with contextlib.suppress(queue.Empty):
                while True:
                    seen.add(lines.get(timeout=0.05))
            assert dump.poll() is None, dump.stderr.read() if dump.stderr else ""
            assert time.monotonic() < deadline, f"oscdump printed only {sorted(seen)}"
    finally:
        dump.terminate()
        dump.wait(timeout=10)
        sender.close()
    assert expected <= seen
