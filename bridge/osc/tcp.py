"""OSC over TCP: one thread per connection, either framing, replies on the same connection.

OSC 1.1 frames packets with SLIP (python-osc's TCP client, Open Stage Control); OSC 1.0 prefixes
each packet with its length as a 32-bit big-endian integer (liblo's ``oscsend osc.tcp://``,
TouchOSC's "OSC 1.0" option). The first byte of a connection tells them apart: a length prefix of
an OSC packet starts with a zero byte, a SLIP stream with END (0xC0) or the packet itself.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pythonosc import slip

from bridge.osc.wire import Reply, Sender, encode_reply
from engine.logs import LogThrottle

log = logging.getLogger(__name__)
# a client reconnecting in a loop with a broken stream must not flood the log
_throttle = LogThrottle(log)

MAX_PACKET = 1 << 20
"""A packet (or unterminated SLIP frame) longer than this closes the connection."""


class PacketHandler(Protocol):
    """What a TCP connection hands its packets to (the OSC server)."""

    def handle_packet(self, data: bytes, sender: Sender) -> list[Reply]: ...

    def drop_malformed(self, sender: Sender, reason: object) -> None: ...


def split_slip(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SLIP frames (still escaped, empty ones dropped) and the unfinished rest."""
    *frames, rest = buffer.split(slip.END)
    return [f for f in frames if f], rest


def split_prefixed(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete length-prefixed packets and the unfinished rest; ValueError on a huge length."""
    packets = []
    while len(buffer) >= 4:
        (size,) = struct.unpack(">I", buffer[:4])
        if size > MAX_PACKET:
            raise ValueError(f"packet of {size} bytes announced")
        if len(buffer) < 4 + size:
            break
        packets.append(buffer[4 : 4 + size])
        buffer = buffer[4 + size :]
    return packets, buffer


def _prefix(datagram: bytes) -> bytes:
    return struct.pack(">I", len(datagram)) + datagram


class _Connection(socketserver.BaseRequestHandler):
    server: TcpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        owner = self.server.owner
        sender: Sender = (str(self.client_address[0]), int(self.client_address[1]))
        pending = b""
        split: Callable[[bytes], tuple[list[bytes], bytes]] | None = None
        encode: Callable[[bytes], bytes] = slip.encode
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            if split is None:
                prefixed = chunk[0] == 0
                split = split_prefixed if prefixed else split_slip
                encode = _prefix if prefixed else slip.encode
            try:
                frames, pending = split(pending + chunk)
            except ValueError as exc:
                _throttle.warning("osc: TCP %s:%d: %s; closing", sender[0], sender[1], exc)
                return
            if len(pending) > MAX_PACKET + 4:
                _throttle.warning("osc: TCP %s:%d sent an endless frame; closing", *sender)
                return
            for frame in frames:
                if split is split_slip:
                    try:
                        frame = slip.decode(frame)
                    except slip.ProtocolError as exc:
                        owner.drop_malformed(sender, exc)
                        continue
                for reply in owner.handle_packet(frame, sender):
                    try:
                        sock.sendall(encode(encode_reply(reply)))
                    except OSError:
                        return


class TcpServer(socketserver.ThreadingTCPServer):
    """A threading TCP server for OSC that remembers its connections so they can be closed."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: Sender, owner: PacketHandler) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Connection)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Shut every open connection down (their threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("osc: error on TCP connection %s", client_address, exc_info=True)
