"""The control room's routes on the OSCQuery port: the page at ``/ui/``, its files, the preview.

``/`` stays OSCQuery JSON for OSCQuery clients; the page lives under ``/ui/``:

- ``/ui/`` the control page (built from the schema at each request, see :mod:`bridge.web.page`);
- ``/ui/static/...`` its script and style sheet (package data);
- ``/ui/preview.mjpeg`` the live preview, ``multipart/x-mixed-replace`` JPEG frames;
- ``/ui/layouts/open-stage-control.json`` and ``/ui/layouts/touchosc.tosc`` controller layouts.

With a control token the page and the preview ask for it: ``/ui/?token=TOKEN`` (a form asks for
it otherwise) stores it in a cookie and redirects to ``/ui/``, so the token leaves the address
bar; the WebSocket then reads the same cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus
from importlib import resources

from aiohttp import web

from bridge.osc.access import token_matches
from bridge.osc.oscquery import TOKEN_COOKIE, OscQueryServer
from bridge.web.page import render_page, render_token_page
from bridge.web.preview import PreviewFeed, PreviewOutput
from osc_schema.export import export_bytes

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
LAYOUTS = {
    "open-stage-control.json": ("open-stage-control", "application/json"),
    "touchosc.tosc": ("touchosc", "application/octet-stream"),
}
KEEPALIVE_S = 1.0
"""A paused preview resends its frame this often, so a viewer that left is noticed."""
_BOUNDARY = "hambaframe"


class ControlRoom:
    """The browser page, its preview and the layout downloads, mounted on the OSCQuery server.

    ``preview`` is the frame output to add to the daemon's outputs (it encodes only while a
    page or another MJPEG client watches).
    """

    def __init__(self, *, name: str = "hambaMetal", preview: bool = True) -> None:
        self.name = name
        self.feed = PreviewFeed()
        self.preview: PreviewOutput | None = PreviewOutput(self.feed) if preview else None
        self._server: OscQueryServer | None = None
        self._stopping: asyncio.Event | None = None

    def install(self, app: web.Application, server: OscQueryServer) -> None:
        """Add the routes under ``/ui`` (called by the OSCQuery server as it starts)."""
        self._server = server
        self._stopping = asyncio.Event()
        app.router.add_get("/ui", self._to_page)
        app.router.add_get("/ui/", self._page)
        app.router.add_get("/ui/static/{name}", self._static)
        app.router.add_get("/ui/preview.mjpeg", self._mjpeg)
        app.router.add_get("/ui/layouts/{name}", self._layout)
        app.on_shutdown.append(self._shutdown)

    # -- handlers -------------------------------------------------------------------------------

    async def _to_page(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        server = self._require_server()
        offered = request.query.get("token")
        if offered is not None and token_matches(server.token, offered):
            # keep the token in a cookie and take it out of the address bar
            response = web.HTTPFound("/ui/")
            response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="Strict")
            raise response
        if not server.authorized(request):
            return web.Response(
                status=HTTPStatus.UNAUTHORIZED,
                text=render_token_page(name=self.name, wrong=offered is not None),
                content_type="text/html",
            )
        page = render_page(
            name=self.name, token_required=server.token is not None, preview=bool(self.preview)
        )
        return web.Response(
            text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        folder = resources.files("bridge.web").joinpath("static")
        if "/" in name or suffix not in STATIC_TYPES or not folder.joinpath(name).is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=folder.joinpath(name).read_bytes(),
            content_type=STATIC_TYPES[suffix],
            headers={"Cache-Control": "no-cache"},
        )

    async def _layout(self, request: web.Request) -> web.StreamResponse:
        found = LAYOUTS.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        fmt, content_type = found
        return web.Response(
            body=export_bytes(fmt),
            content_type=content_type,
            headers={
                "Content-Disposition": f'attachment; filename="hamba-{request.match_info["name"]}"'
            },
        )

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        server = self._require_server()
        if not server.authorized(request):
            return web.Response(status=HTTPStatus.UNAUTHORIZED, text="control token required\n")
        if self.preview is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        stopping = self._stopping
        sequence = 0
        with self.feed.watch(), contextlib.suppress(ConnectionError, RuntimeError):
            while stopping is None or not stopping.is_set():
                sequence, jpeg = await self.feed.wait_newer(sequence, KEEPALIVE_S)
                if jpeg is None:
                    continue
                head = (
                    f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode("ascii")
                await response.write(head + jpeg + b"\r\n")
        return response

    async def _shutdown(self, _app: web.Application) -> None:
        if self._stopping is not None:
            self._stopping.set()
        self.feed.wake_all()

    def _require_server(self) -> OscQueryServer:
        if self._server is None:
            raise web.HTTPServiceUnavailable()
        return self._server
