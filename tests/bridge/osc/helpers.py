"""Helpers for OSC tests on loopback: waiting, reading replies, ordering barriers."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from engine.audio.types import MusicState
from engine.controls import ControlSnapshot, ControlStore
from osc_schema.schema import OscAddress

Number = TypeVar("Number", int, float)

PROBE = "/hamba/__probe__"
_probe_ids = itertools.count()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until ``predicate()`` is truthy; its value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(0.005)


def port_of(sock: socket.socket) -> int:
    """The port a bound socket listens on."""
    return int(sock.getsockname()[1])


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def receive(client: SimpleUDPClient, count: int, timeout: float = 5.0) -> list[OscMessage]:
    """The next ``count`` messages sent to the client's socket."""
    messages: list[OscMessage] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        left = deadline - time.monotonic()
        data = client.receive(timeout=max(left, 0.001)) if left > 0 else b""
        if not data:
            pytest.fail(f"got {len(messages)} of {count} replies: {[str(m) for m in messages]}")
        messages.append(OscMessage(data))
    return messages


def barrier(client: SimpleUDPClient) -> list[OscMessage]:
    """Everything received before the server has handled all this client sent so far.

    The UDP server handles datagrams in order on one thread, so the reply to a probe (an
    unknown address, answered with /hamba/error) comes after the replies to earlier messages.
    """
    probe = f"{PROBE}/{next(_probe_ids)}"
    client.send_message(probe, [])
    received: list[OscMessage] = []
    while True:
        (message,) = receive(client, 1)
        if message.address == "/hamba/error" and message.params[0] == probe:
            return received
        received.append(message)


def same_state(before: ControlSnapshot, store: ControlStore) -> bool:
    after = store.snapshot()
    return after.version == before.version and after.values == before.values


def example_args(
    entry: OscAddress, current: tuple[Any, ...] | None, *, farthest: bool = False
) -> list[Any]:
    """Valid arguments for an incoming address that differ from its ``current`` value.

    ``farthest``: each number goes to the end of its range farthest from its current value
    (the top end when there is none, or on a tie), the largest change it can make.
    """
    args: list[Any] = []
    for i, argument in enumerate(entry.arguments):
        now = current[i] if current is not None and i < len(current) else None
        if argument.choices:
            args.append(next(c for c in argument.choices if c != now))
        elif argument.tag == "s":
            args.append(f"set over osc: {entry.address}")
        elif argument.tag == "T":
            args.append(not now)
        elif argument.tag == "i":
            low = int(argument.minimum or 0)
            high = int(argument.maximum) if argument.maximum is not None else low + 100
            if farthest:
                args.append(_farthest(low, high, now))
            else:
                args.append(next(v for v in (low + 5, high, low) if v != now and v <= high))
        else:
            bottom = float(argument.minimum or 0.0)
            top = float(argument.maximum) if argument.maximum is not None else bottom + 10.0
            if farthest:
                args.append(_farthest(bottom, top, now))
            else:
                args.append(
                    next(v for v in (round(bottom + 0.37 * (top - bottom), 2), top) if v != now)
                )
    return args


def _farthest(low: Number, high: Number, now: Number | None) -> Number:
    return low if now is not None and now - low > high - now else high


def http_get(url: str) -> tuple[int, Any]:
    """Status and decoded JSON body (None when empty) of a real HTTP GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body) if body else None


class RawPacket(OscMessage):
    """Any bytes, sendable with python-osc's ``client.send`` (which only reads ``.dgram``).

    An ``OscMessage`` that skips parsing: the bytes may be malformed on purpose.
    """

    def __init__(self, dgram: bytes) -> None:
        self._raw = dgram

    @property
    def dgram(self) -> bytes:
        return self._raw


def music_state(
    frame: int,
    *,
    beat: bool,
    beat_count: int | None = None,
    energy: float = 0.625,
    tempo: float = 120.0,
    chroma: float | Sequence[float] = 0.25,
) -> MusicState:
    """A MusicState for feedback tests (beat count defaults to one beat every 15 frames)."""
    values = np.broadcast_to(np.asarray(chroma, dtype=np.float32), (12,))
    return MusicState(
        frame=frame,
        time=frame / 30,
        energy=energy,
        onset=0.0,
        beat=beat,
        beat_phase=0.0,
        beat_count=frame // 15 if beat_count is None else beat_count,
        tempo=tempo,
        chroma=values,
    )
