"""The OSC control server: validates every message against the schema and applies it.

UDP is python-osc's :class:`BlockingOSCUDPServer` run in one thread: datagrams are handled one
at a time in arrival order, so the latest value wins (python-osc's threading server may handle
them out of order). TCP (optional) takes OSC 1.1 SLIP or OSC 1.0 length-prefixed streams, one
thread per connection, replies going back over the connection (see :mod:`bridge.osc.tcp`).

Each message of a packet (bundles included, nested or not) is handled on its own: a bad element
never drops the rest of a bundle. Bundle time tags are not waited for: a control applies at the
next frame anyway, and sleeping would stall every other controller. A valid message goes to
:meth:`ControlStore.update`, whose snapshot semantics apply it between frames without blocking
the render loop. An invalid one (unknown address, wrong arity, wrong type, out of range) changes
nothing, is logged (rate-limited) and answered with ``/hamba/error`` (address, reason) to its
sender. A packet that is not OSC at all is dropped and counted, without a traceback.
``/hamba/preset`` replies with every value the preset set; ``/hamba/subscribe`` (port) adds the
sender's host at that port to the feedback targets.

``allow`` (``--osc-allow``) limits the hosts OSC is accepted from: a packet from any other host is
dropped unanswered and counted (:attr:`ServerStats.refused`). Every change of a control, from
whichever surface, is echoed to the feedback targets, so a controller's faders follow changes
made elsewhere (the web page, another controller).
Other addresses that are not controls (``/hamba/midi/learn``) go to the handler a capability
registered with :meth:`OscServer.add_handler`, once their arguments passed the schema.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from bridge.osc.access import Network, describe_networks, host_allowed
from bridge.osc.feedback import FeedbackSender
from bridge.osc.tcp import TcpServer
from bridge.osc.throttle import LogThrottle
from bridge.osc.wire import Reply, Sender, encode_reply, wire_problem
from engine.controls import ControlStore, preset_controls
from engine.errors import ControlError
from engine.lifecycle import StartsOnEnter
from engine.logs import RateLimitFilter, add_filter_once
from osc_schema.controls import LiveControls
from osc_schema.schema import (
    ERROR,
    SUBSCRIBE,
    UNSUBSCRIBE,
    OscSchemaError,
    control_messages,
    lookup,
    parse_arguments,
    parse_message,
)

log = logging.getLogger(__name__)


RECEIVE_BUFFER = 4 * 1024 * 1024
"""SO_RCVBUF asked for the UDP socket: bursts queue in the kernel instead of being dropped
(Linux caps it at net.core.rmem_max)."""

_POLL = 0.05  # how often the serving loops look for a stop request, seconds

Handler = Callable[[tuple[Any, ...], Sender], list[Reply]]
"""Handles an address that is not a control: its checked arguments and the sender -> replies
(raises ControlError naming the address to refuse)."""


def _is_unknown_bundle_element(record: logging.LogRecord) -> bool:
    # python-osc 1.10 logs this on the root logger (logging.warning) for every bundle element
    # that is neither a message nor a bundle, then goes on with the rest of the bundle
    return (
        record.name == "root"
        and record.module == "osc_bundle"
        and str(record.msg).startswith("Could not identify content type")
    )


def quiet_bundle_element_warnings() -> RateLimitFilter:
    """Rate-limit python-osc's per-datagram "Could not identify content type" warning.

    One such record per 10 s gets through, saying how many were held back; the filter's
    ``matched`` counts them all. Installed once per process (the first server start).
    """
    return add_filter_once(
        "", "python-osc-bundle-element", lambda: RateLimitFilter(_is_unknown_bundle_element)
    )


@dataclass
class ServerStats:
    """Counters since start (read them for status; written under the server's lock)."""

    packets: int = 0
    messages: int = 0
    applied: int = 0
    rejected: int = 0
    malformed: int = 0
    refused: int = 0
    """packets dropped because their host is not in the allow-list"""


class OscServer(StartsOnEnter):
    """Listens for OSC on UDP (and optionally TCP) and applies valid messages to ``store``.

    ``port=0`` (or ``tcp_port=0``) binds a free port; :attr:`port` and :attr:`tcp_port` hold the
    bound ports once started. ``feedback`` receives ``/hamba/subscribe`` targets; without one
    the server makes its own (:attr:`feedback`), so subscriptions always work. ``allow`` lists
    the networks OSC is accepted from (empty: any host).
    """

    def __init__(
        self,
        store: ControlStore,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        tcp_port: int | None = None,
        feedback: FeedbackSender | None = None,
        allow: Sequence[Network] = (),
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.tcp_port = tcp_port
        self.feedback = feedback if feedback is not None else FeedbackSender([])
        self.allow = tuple(allow)
        self.stats = ServerStats()
        self.last_rejection: Reply | None = None
        """the last ``/hamba/error`` (address, reason) any sender got (OSCQuery VALUE, LISTEN)"""
        self._stats_lock = threading.Lock()
        self._throttle = LogThrottle(log)
        self._udp: _UdpServer | None = None
        self._tcp: TcpServer | None = None
        self._threads: list[threading.Thread] = []
        self._handlers: dict[str, Handler] = {}

    def add_handler(self, address: str, handler: Handler) -> None:
        """Route an incoming schema address that is not a control to ``handler``."""
        entry = lookup(address)
        if entry.direction != "in" or entry.control is not None:
            raise ValueError(f"{address}: only incoming addresses that are not controls")
        self._handlers[address] = handler

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in background threads; ControlError names a port that cannot be bound."""
        if self._udp is not None:
            return
        quiet_bundle_element_warnings()
        udp = _bind(lambda: _UdpServer((self.host, self.port), self), "UDP", self.host, self.port)
        tcp = None
        if self.tcp_port is not None:
            tcp_port = self.tcp_port
            try:
                tcp = _bind(
                    lambda: TcpServer((self.host, tcp_port), self), "TCP", self.host, tcp_port
                )
            except ControlError:
                udp.server_close()
                raise
        self._udp, self._tcp = udp, tcp
        self.port = udp.server_address[1]
        servers: list[socketserver.BaseServer] = [udp]
        if tcp is not None:
            self.tcp_port = tcp.server_address[1]
            servers.append(tcp)
        for server, name in zip(servers, ("udp", "tcp"), strict=False):
            thread = threading.Thread(
                target=server.serve_forever, args=(_POLL,), name=f"hamba-osc-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.store.subscribe(self._echo)
        log.info(
            "osc: UDP on %s%s, accepted from %s",
            _where(self.host, self.port),
            self._tcp_note(),
            describe_networks(self.allow),
        )

    def stop(self) -> None:
        """Stop serving and close the sockets (open TCP connections too); safe to call twice."""
        self.store.unsubscribe(self._echo)
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        if self._tcp is not None:
            self._tcp.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads = []

    def _tcp_note(self) -> str:
        return f", TCP on port {self.tcp_port}" if self._tcp is not None else ""

    # -- handling ----------------------------------------------------------------------------

    def handle_message(self, address: str, args: Sequence[Any], sender: Sender) -> list[Reply]:
        """Validate and apply one message; the replies for its sender.

        Raises :class:`ControlError` naming the address when the message is invalid; the
        controls are then unchanged.
        """
        try:
            handler = self._handlers.get(address)
            if handler is not None:
                return handler(parse_arguments(address, args), sender)
            if address in (SUBSCRIBE, UNSUBSCRIBE):
                (port,) = parse_arguments(address, args)
                if address == SUBSCRIBE:
                    self.feedback.add_target(sender[0], port)
                else:
                    self.feedback.remove_target(sender[0], port)
                return []
            changes = parse_message(address, args, self.store.values)
        except OscSchemaError as exc:
            raise ControlError(str(exc)) from None
        values = self.store.update(changes, source=address)
        if "preset" not in changes:
            return []
        # a preset answers with every value it set, read back from the new state
        return control_messages(values, preset_controls(changes["preset"]))

    def refuses(self, host: str) -> bool:
        """Is ``host`` outside the allow-list? Then its packet is counted as refused and logged
        (rate-limited): call it once per packet, before handling it."""
        if host_allowed(host, self.allow):
            return False
        self._count(packets=1, refused=1)
        self._throttle.warning("osc: refused a packet from %s (not in --osc-allow)", host)
        return True

    def handle_packet(self, data: bytes, sender: Sender) -> list[Reply]:
        """Handle every message in one packet; the replies (errors included). Never raises.

        A packet from a host outside the allow-list is dropped unanswered (counted as refused).
        """
        if self.refuses(sender[0]):
            return []
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception as exc:  # noqa: BLE001 - python-osc raises more than ParseError on garbage
            self.drop_malformed(sender, exc)
            return []
        replies: list[Reply] = []
        applied = 0
        for message in messages:
            address = message.address
            problem = wire_problem(message)
            if problem is not None:
                replies.extend(self._reject(address, f"{address}: {problem}", sender))
                continue
            try:
                replies.extend(self.handle_message(address, message.params, sender))
            except ControlError as exc:
                replies.extend(self._reject(address, str(exc), sender))
                continue
            except Exception as exc:  # noqa: BLE001 - one handler's bug must not drop the bundle's rest
                self._throttle.log(logging.ERROR, "osc: %s failed", address, exc_info=True)
                replies.extend(self._reject(address, f"{address}: internal error: {exc}", sender))
                continue
            applied += 1
        self._count(packets=1, messages=len(messages), applied=applied)
        return replies

    def drop_malformed(self, sender: Sender, reason: object) -> None:
        """Count a packet that is not OSC (logged at debug level: garbage is not news)."""
        self._count(packets=1, malformed=1)
        log.debug("osc: dropped a malformed packet from %s:%d: %s", sender[0], sender[1], reason)

    def _reject(self, address: str, message: str, sender: Sender) -> list[Reply]:
        self._count(rejected=1)
        self._throttle.warning("osc: rejected from %s:%d: %s", sender[0], sender[1], message)
        if address == ERROR:
            # never answer an error with an error: two servers would ping-pong forever
            return []
        reply: Reply = (ERROR, (address, message.removeprefix(f"{address}: ")))
        self.last_rejection = reply
        return [reply]

    def _echo(self, values: LiveControls, changed: frozenset[str]) -> None:
        # on the writer's thread: non-blocking sends to the feedback targets
        if not changed or not self.feedback.targets:
            return
        self.feedback.send_values(dict(control_messages(values, sorted(changed))))

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for name, amount in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)


def _where(host: str, port: int) -> str:
    return f"{host}:{port}" + (" (all interfaces)" if host in ("", "0.0.0.0", "::") else "")


def _bind(factory: Callable[[], Any], transport: str, host: str, port: int) -> Any:
    try:
        return factory()
    except OSError as exc:
        raise ControlError(
            f"OSC {transport} port {port} on {host}: cannot listen ({exc.strerror or exc})"
        ) from None


class _UdpServer(BlockingOSCUDPServer):
    """python-osc's blocking UDP server, handing each datagram to :class:`OscServer`."""

    def __init__(self, address: Sender, owner: OscServer) -> None:
        self.owner = owner
        # python-osc's base wants a dispatcher; the schema does the dispatching instead
        super().__init__(address, Dispatcher())

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        super().server_bind()

    def finish_request(self, request: Any, client_address: Any) -> None:
        data, sock = request
        for reply in self.owner.handle_packet(data, client_address):
            try:
                sock.sendto(encode_reply(reply), client_address)
            except OSError as exc:
                log.debug("osc: reply to %s failed: %s", client_address, exc)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("osc: error handling a datagram from %s", client_address, exc_info=True)
