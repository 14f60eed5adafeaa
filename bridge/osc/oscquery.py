"""OSCQuery: the address space over HTTP, advertised with zeroconf where mDNS works.

Follows the OSCQuery proposal (github.com/Vidvox/OSCQueryProposal): ``GET /`` is the whole
namespace (FULL_PATH, CONTENTS, TYPE, RANGE, ACCESS, DESCRIPTION, UNIT, VALUE), ``GET /a/b``
one node, ``GET /a/b?VALUE`` one attribute (``{"VALUE": [...]}``; 204 when the node has no such
attribute), ``GET /?HOST_INFO`` the server's name, extensions and OSC port. An unknown path is
404, an unknown query 400. Values are read from the control store at each request, so they are
always the current ones.

Advertising (``_oscjson._tcp`` for the HTTP server, ``_osc._udp`` for the OSC port) runs in a
background thread: where multicast DNS is unavailable it logs and gives up, and the HTTP server
works regardless; :attr:`OscQueryServer.advertisement` tells which happened.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.osc.feedback import FeedbackSender
from engine.controls import ControlStore
from engine.errors import ControlError
from engine.lifecycle import StartsOnEnter
from osc_schema.export import find_node, oscquery_namespace
from osc_schema.schema import values_of

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
    "LISTEN": False,
    "PATH_CHANGED": False,
    "PATH_RENAMED": False,
    "PATH_ADDED": False,
    "PATH_REMOVED": False,
}
ADVERTISE_TIMEOUT = 0.5
"""Seconds stop() waits for the advertising thread to withdraw the services: zeroconf's goodbye
takes 0.25 s (three packets 125 ms apart). A registration still probing (1-2 s per service) is
not waited for: the thread is a daemon and withdraws what it announced if the process lives on."""


class OscQueryServer(StartsOnEnter):
    """Serves the OSCQuery namespace of ``store`` over HTTP (a thread per request).

    ``http_port=0`` binds a free port (:attr:`http_port` holds the bound one once started).
    ``osc_port`` is the OSC server's UDP port, given out in HOST_INFO and advertised.
    ``feedback``, when given, supplies the last values sent on the outgoing addresses.
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
    ) -> None:
        self.store = store
        self.host = host
        self.http_port = http_port
        self.osc_port = osc_port
        self.name = name
        self.feedback = feedback
        self.advertise = advertise
        self.advertisement = "off"
        """``off``, ``pending``, ``advertised`` or ``unavailable`` (mDNS did not work here)."""
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._mdns_thread: threading.Thread | None = None
        self._stop_mdns = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve; ControlError names a port that cannot be bound."""
        if self._http is not None:
            return
        try:
            http = _HttpServer((self.host, self.http_port), self)
        except OSError as exc:
            raise ControlError(
                f"OSCQuery HTTP port {self.http_port} on {self.host}: cannot listen"
                f" ({exc.strerror or exc})"
            ) from None
        self._http = http
        self.http_port = int(http.server_address[1])
        self._http_thread = threading.Thread(
            target=http.serve_forever, args=(0.05,), name="hamba-oscquery", daemon=True
        )
        self._http_thread.start()
        log.info("oscquery: http://%s:%d/", self.host, self.http_port)
        if self.advertise:
            self.advertisement = "pending"
            self._stop_mdns.clear()
            self._mdns_thread = threading.Thread(
                target=self._advertise, name="hamba-mdns", daemon=True
            )
            self._mdns_thread.start()

    def stop(self) -> None:
        """Withdraw the advertisement (bounded wait) and stop serving; safe to call twice."""
        self._stop_mdns.set()
        if self._mdns_thread is not None:
            self._mdns_thread.join(timeout=ADVERTISE_TIMEOUT)
            self._mdns_thread = None
            self.advertisement = "off"
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None

    # -- content -----------------------------------------------------------------------------

    def namespace(self) -> dict[str, Any]:
        """The namespace with the current values."""
        values: dict[str, tuple[Any, ...]] = values_of(self.store.values)
        if self.feedback is not None:
            values.update(self.feedback.latest())
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

    # -- zeroconf ----------------------------------------------------------------------------

    def _advertise(self) -> None:
        try:
            from zeroconf import IPVersion, ServiceInfo, Zeroconf
        except ImportError:
            self._unavailable("zeroconf is not installed")
            return
        try:
            zc = Zeroconf(ip_version=IPVersion.V4Only)
        except Exception as exc:  # no multicast here (containers, locked-down hosts)
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
        except Exception as exc:
            self._unavailable(exc)
        finally:
            zc.close()

    def _unavailable(self, reason: object) -> None:
        self.advertisement = "unavailable"
        log.info("oscquery: not advertised (mDNS unavailable: %s)", reason)


def _advertised_ips(host: str) -> list[str]:
    """The IPv4 addresses to advertise: the bound one, or every interface's for a wildcard."""
    if host not in ("", "0.0.0.0"):
        return [socket.gethostbyname(host)]
    import ifaddr  # zeroconf's own dependency

    ips = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not str(ip.ip).startswith("127.")
    ]
    return ips or ["127.0.0.1"]


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: OscQueryServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        local_ip = str(self.connection.getsockname()[0])
        status, body = self.server.owner.respond(self.path, local_ip)
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if status != HTTPStatus.NO_CONTENT:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("oscquery: %s " + format, self.address_string(), *args)
