"""HTTP clients that misbehave (issue 11, item 9): no traceback, no thread or fd held forever.

Real sockets on loopback: clients that connect and say nothing, that reset the connection right
after asking (the server's answer meets a closed socket), that send malformed requests.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.osc.oscquery import OscQueryServer
from engine.controls import ControlStore
from tests.bridge.osc.helpers import http_get, open_fds, wait_for

IDLE_TIMEOUT = 0.5


@pytest.fixture
def oscquery(store: ControlStore) -> Iterator[OscQueryServer]:
    with OscQueryServer(
        store, osc_port=9000, advertise=False, idle_timeout=IDLE_TIMEOUT
    ) as running:
        yield running


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionError:
        return True


def test_idle_connections_hold_no_thread_and_time_out(oscquery: OscQueryServer) -> None:
    threads, fds = threading.active_count(), open_fds()
    idle = [socket.create_connection(("127.0.0.1", oscquery.http_port)) for _ in range(50)]
    try:
        for sock in idle:
            sock.settimeout(0.01)
        time.sleep(0.1)
        assert threading.active_count() == threads  # not a thread per connection
        # the server hangs up on each one once the idle timeout has passed
        wait_for(lambda: all(_closed_by_peer(sock) for sock in idle), timeout=10)
        assert http_get(f"http://127.0.0.1:{oscquery.http_port}/hamba/seed?VALUE")[0] == 200
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: open_fds() <= fds)
    assert threading.active_count() == threads


def _reset_after_asking(port: int, request: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST: the server's response meets a connection that is gone


def test_clients_that_hang_up_or_send_garbage_leave_no_traceback(
    oscquery: OscQueryServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = oscquery.http_port
    threads, fds = threading.active_count(), open_fds()
    for _ in range(40):
        _reset_after_asking(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _reset_after_asking(port, b"GET /hamba/blend?VALUE HTTP/1.1\r\nHost: x\r\n\r\nGET /")
    for junk in (
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n",  # a TLS hello
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost",  # cut off mid-header
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000,
        os.urandom(512),
    ):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(junk)
            time.sleep(0.02)
    # still serving, and nothing held
    assert http_get(f"http://127.0.0.1:{port}/hamba/seed?VALUE") == (200, {"VALUE": [42]})
    wait_for(lambda: open_fds() <= fds)
    assert threading.active_count() == threads
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text
