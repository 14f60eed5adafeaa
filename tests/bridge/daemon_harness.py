"""Drive a real `hamba run` subprocess: free ports, OSC in, OSCQuery and feedback out, shm frames."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from bridge.outputs.shm import ShmFrameReader
from tests.bridge.cli_process import TINY_64, start_hamba

T = TypeVar("T")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise AssertionError(
                f"daemon exited ({proc.returncode}) while waiting for {what}:\n{tail}"
            )
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


@dataclass
class FeedbackListener:
    """A UDP socket that collects the daemon's feedback messages by address."""

    sock: socket.socket = field(
        default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    )
    messages: dict[str, list[list[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return
            for packet in OscPacket(data).messages:
                msg = packet.message
                self.messages.setdefault(msg.address, []).append(list(msg.params))

    def close(self) -> None:
        self.sock.close()


@dataclass
class DaemonUnderTest:
    proc: subprocess.Popen[bytes]
    log: Path
    name: str
    osc_port: int
    oscquery_port: int
    fps: float
    osc: SimpleUDPClient = field(init=False)

    def __post_init__(self) -> None:
        self.osc = SimpleUDPClient("127.0.0.1", self.osc_port)

    def value(self, address: str) -> Any:
        url = f"http://127.0.0.1:{self.oscquery_port}{address}?VALUE"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())["VALUE"][0]

    def wait_value(self, address: str, expected: Any, timeout: float = 10.0) -> None:
        wait_for(
            lambda: self.value(address) == expected,
            timeout,
            f"{address} == {expected!r}",
            self.proc,
            self.log,
        )

    def reader(self, timeout: float = 120.0) -> ShmFrameReader:
        reader = ShmFrameReader(self.name)  # attaches lazily, once the writer exists
        wait_for(reader.read, timeout, "the first shared-memory frame", self.proc, self.log)
        return reader

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon ignored SIGTERM for {timeout} s") from None


def start_daemon(
    tmp: Path,
    source: list[str],
    *,
    name: str,
    fps: float,
    feedback_port: int,
    extra_env: dict[str, str] | None = None,
    outputs: tuple[str, ...] = ("shm",),
) -> DaemonUnderTest:
    osc_port = free_port()
    oscquery_port = free_port(socket.SOCK_STREAM)
    log = tmp / "daemon.log"
    args = [
        "run",
        *source,
        *TINY_64,
        "--fps",
        str(fps),
        "--name",
        name,
        "--osc-host",
        "127.0.0.1",
        "--osc-port",
        str(osc_port),
        "--oscquery-port",
        str(oscquery_port),
        "--feedback",
        f"127.0.0.1:{feedback_port}",
        "--duration",
        "300",
        "--set",
        f'audio.cache_dir="{tmp / "cache"}"',
    ]
    for spec in outputs:
        args += ["--output", spec]
    proc = start_hamba(args, env=extra_env, log=log)
    return DaemonUnderTest(proc, log, name, osc_port, oscquery_port, fps)


def collect_frames(reader: ShmFrameReader, seconds: float) -> list[tuple[float, int, np.ndarray]]:
    """(wall time, index, image copy) of every distinct frame seen while polling."""
    seen: list[tuple[float, int, np.ndarray]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = reader.read()
        if frame is not None and (not seen or frame.index != seen[-1][1]):
            seen.append((time.monotonic(), frame.index, np.array(frame.image, copy=True)))
        time.sleep(0.005)
    return seen
