"""OSCQuery: the address space over HTTP and a WebSocket on one port, advertised with zeroconf.

Follows the OSCQuery proposal (github.com/Vidvox/OSCQueryProposal): ``GET /`` is the whole
namespace (FULL_PATH, CONTENTS, TYPE, RANGE, ACCESS, DESCRIPTION, UNIT, VALUE), ``GET /a/b``
one node, ``GET /a/b?VALUE`` one attribute (``{"VALUE": [...]}``; 204 when the node has no such
attribute), ``GET /?HOST_INFO`` the server's name, extensions, OSC port and WebSocket. An unknown
path is 404, an unknown query 400. Values are read at each request, so they are current.

The WebSocket (an upgrade of any GET on the same port) speaks the proposal's LISTEN extension:
a text message ``{"COMMAND": "LISTEN", "DATA": "/hamba/blend"}`` streams that address's changes
to the client as OSC binary messages, ``IGNORE`` stops them. Binary messages a client sends are
OSC packets, handled by the OSC server's :meth:`~bridge.osc.server.OscServer.handle_packet`, the
same validated path as UDP (replies, ``/hamba/error`` included, come back over the socket).
Control changes stream as they happen, each once and in order; the engine's outgoing values
(energy, chroma, fps...) are sampled at :data:`METER_RATE` (latest value wins). Garbage text or
binary is dropped (and counted), never answered with a traceback.

HTTP and WebSocket run on aiohttp in one thread with its own event loop: an idle or abandoned
connection holds a socket, never a thread; connections that send nothing are closed after
``idle_timeout`` seconds; a client that hangs up mid-response is not news (no traceback).
Other surfaces on the same port (the control page, the preview) plug in as :class:`WebMount`\\ s.

Advertising (``_oscjson._tcp`` for the HTTP server, ``_osc._udp`` for the OSC port) runs in a
background thread: where multicast DNS is unavailable it logs and gives up, and the HTTP server
works regardless; :attr:`OscQueryServer.advertisement` tells which happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.osc.access import interface_ips, token_matches
from bridge.osc.feedback import FeedbackSender
from bridge.osc.server import OscServer
from bridge.osc.throttle import LogThrottle
from bridge.osc.wire import Reply, encode_reply
from engine.controls import ControlStore
from engine.errors import ControlError
from engine.lifecycle import StartsOnEnter
from engine.logs import add_filter_once
from osc_schema.controls import LiveControls
from osc_schema.export import find_node, oscquery_namespace
from osc_schema.schema import ADDRESSES, ERROR, control_messages, values_of

log = logging.getLogger(__name__)

# the attributes one may ask a node for with ?NAME (the proposal's node fields)
NODE_ATTRIBUTES = frozenset(
    {"FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "RANGE", "DESCRIPTION", "UNIT", "VALUE"}
)
EXTENSIONS: dict[str, bool] = {
    "ACCESS": True,
    "VALUE": True,
    "RANGE": True,
    "DESCRIPTION": True,
    "UNIT": True,
    "TAGS": False,
    "CLIPMODE": False,
    "CRITICAL": False,
    "OVERLOADS": False,
    "EXTENDED_TYPE": False,
    "LISTEN": True,
    "PATH_CHANGED": True,
    "PATH_RENAMED": False,
    "PATH_ADDED": False,
    "PATH_REMOVED": False,
}
ADVERTISE_TIMEOUT = 0.5
"""Seconds stop() waits for the advertising thread to withdraw the services: zeroconf's goodbye
takes 0.25 s (three packets 125 ms apart). A registration still probing (1-2 s per service) is
not waited for: the thread is a daemon and withdraws what it announced if the process lives on."""
IDLE_TIMEOUT = 15.0
"""Seconds an HTTP connection may stay open without a request before it is closed."""
STOP_TIMEOUT = 0.5
"""Seconds stop() gives open requests and WebSockets to finish before they are cut."""
METER_RATE = 30.0
"""How often (Hz) the engine's outgoing values are sampled for LISTENing clients."""
CLIENT_QUEUE = 512
"""Control changes waiting per WebSocket client at most (the oldest go first)."""
TOKEN_COOKIE = "hamba_token"
"""The cookie the control page keeps the token in (set by ``/ui/?token=...``)."""
_WS_HEARTBEAT = 20.0  # seconds between pings: a client that vanished is noticed within two
_MAX_WS_MESSAGE = 1 << 20

# aiohttp's own loggers: a client's misbehaviour is debug-level news, never a traceback
_AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.websocket")


class WebMount(Protocol):
    """Something served on the OSCQuery port besides OSCQuery (the control page, the preview).

    ``install`` adds its routes to ``app`` (before the OSCQuery catch-all) and may register
    ``app.on_shutdown`` hooks; it can ask ``server.authorized(request)`` about the token.
    """

    def install(self, app: web.Application, server: OscQueryServer) -> None: ...


@dataclass
class WebSocketStats:
    """Counters of the WebSocket side since start (read them for status and tests)."""

    connections: int = 0
    open: int = 0
    commands: int = 0
    dropped_commands: int = 0
    packets_in: int = 0
    messages_out: int = 0
    overflowed: int = 0


@dataclass(eq=False)
class _Client:
    """One WebSocket client: what it listens to and what waits to be sent to it."""

    ws: web.WebSocketResponse
    peer: tuple[str, int]
    listening: set[str] = field(default_factory=set)
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=CLIENT_QUEUE))
    meters: dict[str, bytes] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, datagram: bytes, stats: WebSocketStats) -> None:
        if len(self.queue) == self.queue.maxlen:
            stats.overflowed += 1
        self.queue.append(datagram)
        self.wake.set()

    def push_meter(self, address: str, datagram: bytes) -> None:
        self.meters[address] = datagram  # latest wins: a slow client gets the newest value
        self.wake.set()


class OscQueryServer(StartsOnEnter):
    """Serves the OSCQuery namespace of ``store`` over HTTP and a WebSocket, on one port.

    ``http_port=0`` binds a free port (:attr:`http_port` holds the bound one once started).
    ``osc_port`` is the OSC server's UDP port, given out in HOST_INFO and advertised.
    ``feedback``, when given, supplies the last values sent on the outgoing addresses.
    ``osc`` handles OSC sent over the WebSocket (the daemon's server, so its allow-list and
    counters apply; by default an unstarted one of the same store). ``token`` makes the
    WebSocket (and the mounts that ask) require it. ``mounts`` add other routes on the port.
    """

    def __init__(
        self,
        store: ControlStore,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        osc_port: int,
        name: str = "hambaMetal",
        advertise: bool = True,
        feedback: FeedbackSender | None = None,
        osc: OscServer | None = None,
        token: str | None = None,
        mounts: Sequence[WebMount] = (),
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.store = store
        self.host = host
        self.http_port = http_port
        self.osc_port = osc_port
        self.name = name
        self.feedback = feedback
        # without the daemon's server, an unstarted one of the same store validates the writes
        self._own_osc = osc is None
        self.osc = osc if osc is not None else OscServer(store, host, 0, feedback=feedback)
        self.token = token
        self.mounts = tuple(mounts)
        self.idle_timeout = idle_timeout
        self.advertise = advertise
        self.advertisement = "off"
        """``off``, ``pending``, ``advertised`` or ``unavailable`` (mDNS did not work here)."""
        self.ws_stats = WebSocketStats()
        self._throttle = LogThrottle(log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._clients: set[_Client] = set()
        self._meter_task: asyncio.Task[None] | None = None
        self._mdns_thread: threading.Thread | None = None
        self._stop_mdns = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in a background thread; ControlError names a port that cannot be bound."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="hamba-oscquery", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        except OSError as exc:
            _halt(loop, thread)
            raise ControlError(
                f"OSCQuery HTTP port {self.http_port} on {self.host}: cannot listen"
                f" ({exc.strerror or exc})"
            ) from None
        except BaseException:
            _halt(loop, thread)
            raise
        self._loop, self._thread = loop, thread
        self.store.subscribe(self._controls_changed)
        log.info("oscquery: http://%s:%d/ (WebSocket on the same port)", self.host, self.http_port)
        if self.advertise:
            self.advertisement = "pending"
            self._stop_mdns.clear()
            self._mdns_thread = threading.Thread(
                target=self._advertise, name="hamba-mdns", daemon=True
            )
            self._mdns_thread.start()

    def stop(self) -> None:
        """Stop serving and withdraw the advertisement, both bounded; safe to call twice.

        Open WebSockets are closed (going away), open requests get :data:`STOP_TIMEOUT` to end;
        the whole takes well under a second (the mDNS goodbye runs meanwhile).
        """
        self._stop_mdns.set()
        self.store.unsubscribe(self._controls_changed)
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(timeout=STOP_TIMEOUT * 3)
            except Exception as exc:  # noqa: BLE001 - a stuck shutdown must not keep the daemon up
                log.debug("oscquery: shutdown did not finish cleanly: %r", exc)
            _halt(loop, thread)
        if self._mdns_thread is not None:
            self._mdns_thread.join(timeout=ADVERTISE_TIMEOUT)
            self._mdns_thread = None
            self.advertisement = "off"
        if self._own_osc and self.feedback is None:
            self.osc.feedback.close()  # the socket our own server made

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def websocket_clients(self) -> int:
        """WebSocket clients connected now."""
        return len(self._clients)

    async def _serve(self) -> None:
        for name in _AIOHTTP_LOGGERS:
            add_filter_once(name, "oscquery-client-noise", _DebugBelowWarning)
        app = web.Application(client_max_size=64 * 1024)
        app.on_shutdown.append(self._close_websockets)
        for mount in self.mounts:
            mount.install(app, self)
        app.router.add_get("/{path:.*}", self._get, allow_head=False)
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self.idle_timeout,
            shutdown_timeout=STOP_TIMEOUT,
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.http_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.http_port = int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._meter_task is not None:
            self._meter_task.cancel()
            self._meter_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _close_websockets(self, _app: web.Application) -> None:
        clients = list(self._clients)
        await asyncio.gather(
            *(client.ws.close(code=1001, message=b"server shutting down") for client in clients),
            return_exceptions=True,
        )

    # -- content -----------------------------------------------------------------------------

    def outgoing_values(self) -> dict[str, tuple[Any, ...]]:
        """The last values of the outgoing addresses (feedback, the last ``/hamba/error``)."""
        values: dict[str, tuple[Any, ...]] = {}
        if self.feedback is not None:
            values.update(self.feedback.latest())
        rejection = self.osc.last_rejection
        if rejection is not None:
            values[rejection[0]] = rejection[1]
        return values

    def namespace(self) -> dict[str, Any]:
        """The namespace with the current values."""
        values: dict[str, tuple[Any, ...]] = values_of(self.store.values)
        values.update(self.outgoing_values())
        return oscquery_namespace(values)

    def host_info(self, local_ip: str | None = None) -> dict[str, Any]:
        """HOST_INFO: name, extensions and where to send OSC (``local_ip`` for a wildcard host)."""
        ip = self.host if self.host not in ("", "0.0.0.0") else (local_ip or "127.0.0.1")
        return {
            "NAME": self.name,
            "EXTENSIONS": dict(EXTENSIONS),
            "OSC_IP": ip,
            "OSC_PORT": self.osc_port,
            "OSC_TRANSPORT": "UDP",
            "WS_IP": ip,
            "WS_PORT": self.http_port,
        }

    def respond(
        self, target: str, local_ip: str | None = None
    ) -> tuple[int, dict[str, Any] | None]:
        """The status and JSON body for ``GET target`` (None: no body)."""
        parts = urlsplit(target)
        query = unquote(parts.query)
        if query == "HOST_INFO":
            return HTTPStatus.OK, self.host_info(local_ip)
        if query and query not in NODE_ATTRIBUTES:
            return HTTPStatus.BAD_REQUEST, None
        node = find_node(self.namespace(), unquote(parts.path) or "/")
        if node is None:
            return HTTPStatus.NOT_FOUND, None
        if not query:
            return HTTPStatus.OK, node
        if query not in node:
            return HTTPStatus.NO_CONTENT, None
        return HTTPStatus.OK, {query: node[query]}

    def authorized(self, request: web.BaseRequest) -> bool:
        """Does ``request`` carry the control token (header, cookie or ``?token=``), or is none set?"""
        if self.token is None:
            return True
        offered = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ").strip()
        return token_matches(self.token, offered)

    # -- HTTP --------------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local_ip = str(sockname[0]) if sockname else None
        status, body = self.respond(request.path_qs, local_ip)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    # -- WebSocket ---------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return web.Response(status=HTTPStatus.UNAUTHORIZED, text="control token required\n")
        if not _same_origin(request):
            return web.Response(status=HTTPStatus.FORBIDDEN, text="cross-origin WebSocket\n")
        ws = web.WebSocketResponse(
            heartbeat=_WS_HEARTBEAT, max_msg_size=_MAX_WS_MESSAGE, timeout=STOP_TIMEOUT
        )
        await ws.prepare(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client = _Client(ws, (str(peer[0]), int(peer[1])) if peer else ("", 0))
        self._clients.add(client)
        self.ws_stats.connections += 1
        self.ws_stats.open = len(self._clients)
        writer = asyncio.create_task(self._pump(client))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._command(client, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._packet(client, message.data)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self._clients.discard(client)
            self.ws_stats.open = len(self._clients)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
        return ws

    async def _pump(self, client: _Client) -> None:
        """Send what waits for one client, in order, then the newest meter values."""
        ws = client.ws
        while not ws.closed:
            await client.wake.wait()
            client.wake.clear()
            while client.queue or client.meters:
                if client.queue:
                    datagram = client.queue.popleft()
                else:
                    datagram = client.meters.pop(next(iter(client.meters)))
                try:
                    await ws.send_bytes(datagram)
                except (ConnectionError, RuntimeError):
                    return  # closing: the reader ends the connection
                self.ws_stats.messages_out += 1

    def _command(self, client: _Client, text: str) -> None:
        self.ws_stats.commands += 1
        try:
            command = json.loads(text)
            verb, path = command["COMMAND"], command["DATA"]
            if not isinstance(path, str):
                raise TypeError("DATA must be a path")
        except (ValueError, KeyError, TypeError) as exc:
            self._drop_command(client, f"not a command ({exc})")
            return
        entry = ADDRESSES.get(path)
        if verb == "LISTEN":
            if entry is None or not entry.readable:
                self._drop_command(client, f"LISTEN {path}: no readable address there")
                return
            client.listening.add(path)
            if entry.direction == "out":
                self._ensure_meters()
        elif verb == "IGNORE":
            client.listening.discard(path)
        else:
            self._drop_command(client, f"unknown command {verb!r}")

    def _drop_command(self, client: _Client, reason: str) -> None:
        self.ws_stats.dropped_commands += 1
        self._throttle.log(
            logging.DEBUG, "oscquery: WebSocket %s:%d: dropped %s", *client.peer, reason
        )

    def _packet(self, client: _Client, data: bytes) -> None:
        self.ws_stats.packets_in += 1
        if self.osc.refuses(client.peer[0]):
            reply: Reply = (ERROR, ("", f"host {client.peer[0]} may not steer (--osc-allow)"))
            client.push(encode_reply(reply), self.ws_stats)
            return
        for reply in self.osc.handle_packet(data, client.peer):
            client.push(encode_reply(reply), self.ws_stats)

    # -- change streams ----------------------------------------------------------------------

    def _controls_changed(self, values: LiveControls, changed: frozenset[str]) -> None:
        """Store listener (on the writer's thread): hand the changes to the event loop."""
        loop = self._loop
        # nobody connected, nobody to tell (len of a set is safe from this thread)
        if loop is None or not changed or not self._clients:
            return
        messages = control_messages(values, sorted(changed))
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._broadcast, messages)

    def _broadcast(self, messages: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        for address, args in messages:
            listeners = [c for c in self._clients if address in c.listening]
            if not listeners:
                continue
            datagram = encode_reply((address, args))
            for client in listeners:
                client.push(datagram, self.ws_stats)

    def _ensure_meters(self) -> None:
        if self._meter_task is None or self._meter_task.done():
            self._meter_task = asyncio.get_running_loop().create_task(self._sample_meters())

    async def _sample_meters(self) -> None:
        """While anyone listens to an outgoing address, send its changes at METER_RATE."""
        sent: Mapping[str, tuple[Any, ...]] = {}
        while True:
            wanted = {
                a for c in self._clients for a in c.listening if ADDRESSES[a].direction == "out"
            }
            if not wanted:
                self._meter_task = None
                return
            values = self.outgoing_values()
            for address in wanted:
                args = values.get(address)
                if args is None or sent.get(address) == args:
                    continue
                datagram = encode_reply((address, args))
                for client in self._clients:
                    if address in client.listening:
                        client.push_meter(address, datagram)
            sent = values
            await asyncio.sleep(1.0 / METER_RATE)

    # -- zeroconf ----------------------------------------------------------------------------

    def _advertise(self) -> None:
        try:
            from zeroconf import IPVersion, ServiceInfo, Zeroconf
        except ImportError:
            self._unavailable("zeroconf is not installed")
            return
        try:
            zc = Zeroconf(ip_version=IPVersion.V4Only)
        except Exception as exc:  # noqa: BLE001 - no multicast here (containers, locked-down hosts)
            self._unavailable(exc)
            return
        try:
            addresses = [socket.inet_aton(ip) for ip in _advertised_ips(self.host)]
            server = f"{socket.gethostname().split('.')[0] or 'hamba'}.local."
            services = [
                ServiceInfo(
                    "_oscjson._tcp.local.",
                    f"{self.name}._oscjson._tcp.local.",
                    addresses=addresses,
                    port=self.http_port,
                    server=server,
                ),
                ServiceInfo(
                    "_osc._udp.local.",
                    f"{self.name}._osc._udp.local.",
                    addresses=addresses,
                    port=self.osc_port,
                    server=server,
                ),
            ]
            for info in services:
                if self._stop_mdns.is_set():
                    break
                zc.register_service(info, allow_name_change=True)
            else:
                self.advertisement = "advertised"
                log.info("oscquery: advertised %s over mDNS", self.name)
            self._stop_mdns.wait()
            zc.unregister_all_services()
        except Exception as exc:  # noqa: BLE001 - mDNS is optional: the server works without it
            self._unavailable(exc)
        finally:
            zc.close()

    def _unavailable(self, reason: object) -> None:
        self.advertisement = "unavailable"
        log.info("oscquery: not advertised (mDNS unavailable: %s)", reason)


def _halt(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop a server loop and its thread (bounded), then close the loop."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=STOP_TIMEOUT)
    if not thread.is_alive():
        loop.close()


def _same_origin(request: web.BaseRequest) -> bool:
    """A browser's WebSocket from another site is refused; clients without Origin are not."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return True
    return parts.netloc.lower() == request.host.lower()


class _DebugBelowWarning(logging.Filter):
    """aiohttp logs a client's hang-up or garbage with a traceback: make it one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _client_caused(record):
            return True
        assert record.exc_info is not None
        exc = record.exc_info[1]
        reason = (str(exc).strip().splitlines() or [""])[0]
        record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__} {reason}", None
        record.exc_info = record.exc_text = None
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _client_caused(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    # a hang-up, a reset, a half-sent or malformed request: the client's doing, not ours
    return isinstance(exc, (OSError, asyncio.CancelledError, HttpProcessingError))


def _advertised_ips(host: str) -> list[str]:
    """The IPv4 addresses to advertise: the bound one, or every interface's for a wildcard."""
    if host not in ("", "0.0.0.0"):
        return [socket.gethostbyname(host)]
    return interface_ips() or ["127.0.0.1"]
