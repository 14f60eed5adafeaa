"""OSC server and feedback costs: handling rate, a UDP burst, reply latency, feedback per frame.

Measures, on loopback:

- ``handle_packet``: messages per second the server validates and applies, without the network
  (``/hamba/seed`` with a new value each time: schema parse plus a store update);
- burst: one client process (python-osc's SimpleUDPClient) sends N messages back to back, then
  one final message after a pause; records how many the server applied, and how long the client
  took (its sending rate) — the share is what survives UDP on loopback with a 4 MiB SO_RCVBUF;
- reply latency: a bad message sent and its ``/hamba/error`` received, one at a time;
- ``FeedbackSender.send_frame`` with 1 and 8 targets (the render loop pays this every frame).

Writes ``benchmarks/results/osc.json`` with the conditions.
Run: ``.venv/bin/python -m benchmarks.bench_osc [--burst N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_message_builder import build_msg
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.feedback import FeedbackSender
from bridge.osc.server import RECEIVE_BUFFER, OscServer
from engine.audio.types import MusicState
from engine.controls import ControlStore

DEFAULT_OUT = Path(__file__).parent / "results" / "osc.json"

BURST_CLIENT = """
import sys, time
from pythonosc.udp_client import SimpleUDPClient
client = SimpleUDPClient("127.0.0.1", int(sys.argv[1]))
started = time.perf_counter()
for value in range(int(sys.argv[2])):
    client.send_message("/hamba/seed", value)
print(time.perf_counter() - started)
time.sleep(0.3)
client.send_message("/hamba/seed", int(sys.argv[3]))
"""


def send_burst(port: int, count: int, final: int) -> float:
    """Send ``/hamba/seed`` 0..count-1 from another process, then ``final``; its send time (s)."""
    result = subprocess.run(
        [sys.executable, "-c", BURST_CLIENT, str(port), str(count), str(final)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return float(result.stdout.strip())


def handle_rate(messages: int) -> dict[str, float]:
    server = OscServer(ControlStore(), port=0)
    datagrams = [build_msg("/hamba/seed", [i]).dgram for i in range(messages)]
    started = time.perf_counter()
    for datagram in datagrams:
        server.handle_packet(datagram, ("127.0.0.1", 9))
    elapsed = time.perf_counter() - started
    return {"messages": messages, "us_per_message": elapsed / messages * 1e6}


def burst(count: int) -> dict[str, Any]:
    final = 1_234_567_890
    store = ControlStore()
    with OscServer(store, port=0) as server:
        send_seconds = send_burst(server.port, count, final)
        deadline = time.monotonic() + 30
        while store.values.seed != final and time.monotonic() < deadline:
            time.sleep(0.01)
        applied = server.stats.applied - 1  # the final message is not part of the burst
    return {
        "sent": count,
        "applied": applied,
        "share": applied / count,
        "client_messages_per_s": count / send_seconds,
        "final_value_applied": store.values.seed == final,
        "rcvbuf_requested": RECEIVE_BUFFER,
    }


def reply_latency(rounds: int) -> dict[str, float]:
    logging.getLogger("bridge.osc.server").setLevel(logging.ERROR)  # the rejections are the point
    with (
        OscServer(ControlStore(), port=0) as server,
        closing(SimpleUDPClient("127.0.0.1", server.port)) as client,
    ):
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            client.send_message("/hamba/blend", "not a number")
            if not client.receive(timeout=2):
                raise RuntimeError("no /hamba/error reply within 2 s")
            samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "rounds": rounds,
        "median_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }


def feedback_cost(targets: int, frames: int) -> dict[str, float]:
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(targets)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
    sender = FeedbackSender([("127.0.0.1", s.getsockname()[1]) for s in sinks])
    rng = np.random.default_rng(0)
    states = [
        MusicState(
            frame=i,
            time=i / 30,
            energy=float(rng.random()),
            onset=0.0,
            beat=i % 15 == 0,
            beat_phase=0.0,
            beat_count=i // 15,
            tempo=120.0,
            chroma=rng.random(12).astype(np.float32),
        )
        for i in range(frames)
    ]
    samples = []
    for i, state in enumerate(states):
        started = time.perf_counter()
        sender.send_frame(state, fps=30.0, frame=i)
        samples.append((time.perf_counter() - started) * 1e6)
    sender.close()
    for sink in sinks:
        sink.close()
    return {"targets": targets, "frames": frames, "median_us": statistics.median(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20_000, help="messages in the UDP burst")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    # imported here: it brings torch, which the burst helper (used by a test) does not need
    from engine.profiling.profiler import conditions

    results: dict[str, Any] = {
        "benchmark": "osc",
        "conditions": conditions(),
        "handle_packet": handle_rate(20_000),
        "burst": [burst(args.burst) for _ in range(3)],
        "reply_latency": reply_latency(1000),
        "feedback": [feedback_cost(n, 2000) for n in (1, 8)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"handle_packet        {results['handle_packet']['us_per_message']:8.1f} us/message")
    for run in results["burst"]:
        print(
            f"burst of {run['sent']}: applied {run['applied']} ({run['share']:.0%}),"
            f" client sent {run['client_messages_per_s']:,.0f} msg/s"
        )
    latency = results["reply_latency"]
    print(
        f"reply latency        {latency['median_us']:8.1f} us median, {latency['p99_us']:.1f} p99"
    )
    for feed in results["feedback"]:
        print(f"feedback, {feed['targets']} target(s) {feed['median_us']:8.1f} us/frame")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
