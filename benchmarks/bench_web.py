"""The control room's costs: the preview on the render loop (page closed vs open), the WebSocket.

Measures, on loopback, with the real servers (aiohttp OSCQuery + the control room):

- preview cost on the render thread: a paced loop (a numpy stand-in for the model's work, then
  ``OutputGroup.publish``) with the preview output in the group; per frame, the publish call's
  time and the whole frame's, with no viewer ("closed") and with one MJPEG viewer reading the
  stream over HTTP ("open"), at 512x512 and 1024x1024; plus what one JPEG costs the preview's
  own thread;
- WebSocket: the latency of a UDP control change to the LISTENing WebSocket client; 200 clients
  that connect, LISTEN and vanish without closing (threads, fds and Python heap after);
- ``OscQueryServer.stop()``: idle, with 50 WebSocket clients and 3 preview viewers, and with
  mDNS advertising (where mDNS works here).

Writes ``benchmarks/results/web.json`` with the conditions.
Run: ``.venv/bin/python -m benchmarks.bench_web [--frames N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.client import connect

from benchmarks.bench_outputs import natural_frames
from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer
from bridge.outputs import OutputGroup
from bridge.web import ControlRoom
from bridge.web.preview import encode_jpeg
from engine.controls import ControlStore

DEFAULT_OUT = Path(__file__).parent / "results" / "web.json"
FPS = 30.0


def _work(a: np.ndarray, b: np.ndarray, repeats: int) -> float:
    """The model's stand-in: matrix products (they release the GIL, as torch kernels do)."""
    started = time.perf_counter()
    for _ in range(repeats):
        a = np.tanh(a @ b)
    return (time.perf_counter() - started) * 1000


@contextmanager
def mjpeg_viewer(port: int) -> Iterator[dict[str, int]]:
    """A client that reads the preview stream as fast as it comes; counts the JPEGs."""
    seen = {"jpegs": 0, "bytes": 0}
    stop = threading.Event()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /ui/preview.mjpeg HTTP/1.1\r\nHost: bench\r\n\r\n")
    sock.settimeout(0.2)

    def read() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            seen["bytes"] += len(data)
            seen["jpegs"] += data.count(b"Content-Type: image/jpeg")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        stop.set()
        reader.join(2)
        sock.close()


def paced_loop(group: OutputGroup, frames: list[np.ndarray], count: int) -> dict[str, list[float]]:
    """``count`` frames at FPS: work, then publish; per-frame times on this (render) thread."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256), dtype=np.float32) * 0.05
    b = rng.standard_normal((256, 256), dtype=np.float32) * 0.05
    times: dict[str, list[float]] = {"publish_us": [], "frame_ms": [], "work_ms": []}
    period = 1.0 / FPS
    next_due = time.perf_counter()
    for i in range(count):
        started = time.perf_counter()
        times["work_ms"].append(_work(a, b, 6))
        before = time.perf_counter()
        group.publish(frames[i % len(frames)], i, i / FPS)
        done = time.perf_counter()
        times["publish_us"].append((done - before) * 1e6)
        times["frame_ms"].append((done - started) * 1000)
        next_due += period
        time.sleep(max(0.0, next_due - time.perf_counter()))
    return times


def _summary(times: dict[str, list[float]]) -> dict[str, float]:
    publish = sorted(times["publish_us"])
    return {
        "frames": len(publish),
        "publish_us_median": statistics.median(publish),
        "publish_us_p99": publish[int(len(publish) * 0.99) - 1],
        "frame_ms_median": statistics.median(times["frame_ms"]),
        "work_ms_median": statistics.median(times["work_ms"]),
    }


def bench_preview(size: int, count: int, rounds: int = 6) -> dict[str, Any]:
    """Closed and open alternate in ``rounds`` (load from other processes falls on both alike)."""
    frames = natural_frames(size, 16)
    store = ControlStore()
    room = ControlRoom(name="bench")
    assert room.preview is not None
    group = OutputGroup([room.preview])
    group.open(size, size, FPS)
    runs: dict[str, dict[str, list[float]]] = {
        mode: {"publish_us": [], "frame_ms": [], "work_ms": []} for mode in ("closed", "open")
    }
    encoded = {"closed": 0, "open": 0}
    received = 0
    per_round = max(1, count // rounds)
    try:
        with OscQueryServer(store, osc_port=9, advertise=False, mounts=[room]) as server:
            paced_loop(group, frames, 15)  # warm-up
            for n in range(rounds):
                for mode in ("closed", "open") if n % 2 == 0 else ("open", "closed"):
                    before = room.feed.encoded
                    if mode == "closed":
                        times = paced_loop(group, frames, per_round)
                    else:
                        with mjpeg_viewer(server.http_port) as seen:
                            times = paced_loop(group, frames, per_round)
                            time.sleep(0.2)
                        received += seen["jpegs"]
                        deadline = time.monotonic() + 5
                        while room.feed.watchers and time.monotonic() < deadline:
                            time.sleep(0.01)
                    encoded[mode] += room.feed.encoded - before
                    for key, values in times.items():
                        runs[mode][key].extend(values)
    finally:
        group.close()
    jpeg_ms = []
    for frame in frames:
        started = time.perf_counter()
        jpeg = encode_jpeg(frame)
        jpeg_ms.append((time.perf_counter() - started) * 1000)
    closed = _summary(runs["closed"]) | {"jpegs_encoded": encoded["closed"]}
    opened = _summary(runs["open"]) | {"jpegs_encoded": encoded["open"], "jpegs_received": received}
    return {
        "size": f"{size}x{size}",
        "fps": FPS,
        "rounds": rounds,
        "closed": closed,
        "open": opened,
        "encode_ms_on_preview_thread": statistics.median(jpeg_ms),
        "jpeg_kib": len(jpeg) / 1024,
        "render_thread_cost_ms": {
            "publish_closed": closed["publish_us_median"] / 1000,
            "publish_open": opened["publish_us_median"] / 1000,
            "frame_open_minus_closed": opened["frame_ms_median"] - closed["frame_ms_median"],
        },
    }


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def bench_websocket(changes: int, abandoned: int) -> dict[str, Any]:
    store = ControlStore()
    with (
        OscServer(store, port=0) as osc,
        OscQueryServer(store, osc_port=osc.port, osc=osc, advertise=False) as server,
        closing(SimpleUDPClient("127.0.0.1", osc.port)) as udp,
    ):
        url = f"ws://127.0.0.1:{server.http_port}/"

        async def latency() -> list[float]:
            samples = []
            async with connect(url, proxy=None) as ws:
                await ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/hamba/seed"}))
                await asyncio.sleep(0.1)
                for value in range(1, changes + 1):
                    started = time.perf_counter()
                    udp.send_message("/hamba/seed", value)
                    data = await asyncio.wait_for(ws.recv(), 5)
                    assert isinstance(data, bytes)
                    assert OscMessage(data).params == [value]
                    samples.append((time.perf_counter() - started) * 1e6)
            return samples

        async def abandon(count: int) -> None:
            clients = [await connect(url, proxy=None) for _ in range(count)]
            for ws in clients:
                await ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/hamba/blend"}))
            await asyncio.sleep(0.2)
            for ws in clients:
                ws.transport.abort()

        samples = asyncio.run(latency())
        asyncio.run(abandon(20))  # warm-up
        _settle(server)
        threads, fds = threading.active_count(), _fds()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        asyncio.run(abandon(abandoned))
        connect_s = time.perf_counter() - started
        _settle(server)
        time.sleep(1.0)
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        samples.sort()
        return {
            "udp_to_listener_us": {
                "changes": changes,
                "median": statistics.median(samples),
                "p99": samples[int(len(samples) * 0.99) - 1],
            },
            "abandoned": {
                "sockets": abandoned,
                "connect_and_listen_s": connect_s,
                "threads_after_minus_before": threading.active_count() - threads,
                "fds_after_minus_before": _fds() - fds,
                "python_heap_growth_kib": heap / 1024,
                "open_after": server.websocket_clients,
            },
        }


def _settle(server: OscQueryServer) -> None:
    deadline = time.monotonic() + 20
    while server.websocket_clients and time.monotonic() < deadline:
        time.sleep(0.01)


async def _stop_round(server: OscQueryServer, clients: int, viewers: int) -> float:
    """Milliseconds ``server.stop()`` takes with these clients connected."""
    url = f"ws://127.0.0.1:{server.http_port}/"
    sockets = [await connect(url, proxy=None) for _ in range(clients)]
    viewing = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(viewers)]
    for sock in viewing:
        sock.sendall(b"GET /ui/preview.mjpeg HTTP/1.1\r\nHost: bench\r\n\r\n")
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await asyncio.to_thread(server.stop)
    elapsed = (time.perf_counter() - started) * 1000
    # the clients were told "going away": let them finish their close
    await asyncio.gather(*(ws.wait_closed() for ws in sockets), return_exceptions=True)
    for sock in viewing:
        sock.close()
    return elapsed


def bench_stop(rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, clients, viewers, advertise in (
        ("idle", 0, 0, False),
        ("50 websockets + 3 preview viewers", 50, 3, False),
        ("idle, mDNS advertising", 0, 0, True),
    ):
        times, advertisement = [], "off"
        for _ in range(rounds):
            room = ControlRoom(name=f"bench{os.getpid()}")
            server = OscQueryServer(
                ControlStore(), osc_port=9, advertise=advertise, mounts=[room], name=room.name
            )
            server.start()
            if advertise:
                deadline = time.monotonic() + 5
                while server.advertisement == "pending" and time.monotonic() < deadline:
                    time.sleep(0.01)
                advertisement = server.advertisement
            times.append(asyncio.run(_stop_round(server, clients, viewers)))
        results[label] = {
            "median_ms": statistics.median(times),
            "max_ms": max(times),
            "rounds": rounds,
        } | ({"advertisement": advertisement} if advertise else {})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per preview run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--changes", type=int, default=500, help="UDP changes timed to a listener")
    parser.add_argument("--abandoned", type=int, default=200, help="WebSockets left to die")
    parser.add_argument("--stop-rounds", type=int, default=3, help="stop() timings per case")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    import aiohttp
    import PIL

    from engine.profiling.profiler import conditions

    results: dict[str, Any] = {
        "benchmark": "web",
        "conditions": conditions()
        | {"aiohttp": aiohttp.__version__, "pillow": PIL.__version__, "paced_fps": FPS},
        "preview": [bench_preview(size, args.frames) for size in args.sizes],
        "websocket": bench_websocket(args.changes, args.abandoned),
        "stop": bench_stop(args.stop_rounds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for run in results["preview"]:
        cost = run["render_thread_cost_ms"]
        print(
            f"preview {run['size']}: publish {cost['publish_closed'] * 1000:.0f} us closed,"
            f" {cost['publish_open'] * 1000:.0f} us open; frame open-closed"
            f" {cost['frame_open_minus_closed']:+.2f} ms; jpeg {run['encode_ms_on_preview_thread']:.1f}"
            f" ms on its own thread; viewer got {run['open']['jpegs_received']} jpegs"
        )
    ws = results["websocket"]
    print(
        f"udp -> websocket {ws['udp_to_listener_us']['median']:.0f} us median;"
        f" {ws['abandoned']['sockets']} abandoned:"
        f" threads {ws['abandoned']['threads_after_minus_before']:+d},"
        f" fds {ws['abandoned']['fds_after_minus_before']:+d},"
        f" heap {ws['abandoned']['python_heap_growth_kib']:+.0f} KiB"
    )
    for label, stop in results["stop"].items():
        print(f"stop(), {label}: {stop['median_ms']:.1f} ms median, {stop['max_ms']:.1f} max")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
