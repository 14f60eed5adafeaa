"""Load: 20,000 valid messages as fast as one client can send them.

The client is a separate process (python-osc's SimpleUDPClient) so it does not share the GIL
with the server. It sends /hamba/seed 0..19999 back to back, pauses, then sends one distinctive
final value. UDP on loopback may drop datagrams when the sender outruns the handler: the server
asks for a 4 MiB receive buffer (SO_RCVBUF) so bursts queue in the kernel instead. The test
requires that the server survives, that the final state is the last message's, that the values
it applied arrived in the order they were sent (one handler thread: latest wins), and that it
handled a large share (at least half) of the burst; the share is recorded by
benchmarks/bench_osc.py, not asserted here as a speed.
"""

from __future__ import annotations

from benchmarks.bench_osc import send_burst
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from tests.bridge.osc.helpers import wait_for

COUNT = 20_000
FINAL = 1_234_567_890


def test_twenty_thousand_messages_latest_wins() -> None:
    store = ControlStore()
    applied: list[int] = []
    store.subscribe(lambda values, _changed: applied.append(values.seed))
    with OscServer(store, port=0) as server:
        send_burst(server.port, COUNT, FINAL)
        wait_for(lambda: store.values.seed == FINAL, timeout=30)
        stats = server.stats
    assert applied[-1] == FINAL
    burst = applied[:-1]
    assert burst == sorted(set(burst)), "values applied out of order"
    assert all(0 <= value < COUNT for value in burst)
    assert stats.rejected == 0
    assert stats.malformed == 0
    assert stats.applied == len(applied)
    assert len(burst) >= COUNT // 2, f"handled only {len(burst)} of {COUNT}"
