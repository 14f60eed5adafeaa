"""The control room over real HTTP on loopback: the page from the schema, the token, the preview.

The browser itself is exercised in test_browser.py; here the server side is checked with plain
HTTP clients (urllib for pages, a raw socket reading the MJPEG stream).
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from bridge.osc.oscquery import OscQueryServer
from bridge.web import ControlRoom
from bridge.web.page import control_widgets, listened_addresses, meter_widgets
from bridge.web.preview import MAX_SIZE, PreviewFeed, PreviewOutput, preview_size
from engine.controls import ControlStore
from osc_schema.schema import SCHEMA
from tests.bridge.osc.helpers import wait_for

TOKEN = "backstage-42"


class Elements(HTMLParser):
    """Every start tag's attributes, for checking what the page holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.fixture
def room() -> ControlRoom:
    return ControlRoom(name="stage left")


@pytest.fixture
def served(store: ControlStore, room: ControlRoom) -> Iterator[OscQueryServer]:
    with OscQueryServer(store, osc_port=9000, advertise=False, mounts=[room]) as server:
        yield server


def base(server: OscQueryServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def writable_controls() -> set[str]:
    return {e.address for e in SCHEMA if e.direction == "in" and e.writable and e.control}


def test_the_page_holds_every_writable_control_and_every_meter(served: OscQueryServer) -> None:
    status, body, headers = get(base(served) + "/ui/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    tags = parse(body.decode())
    on_page = {attrs["data-osc"] for _, attrs in tags if attrs.get("data-osc")}
    assert writable_controls() <= on_page
    assert {e.address for e in SCHEMA if e.direction == "out"} <= on_page
    sliders = {a["data-osc"]: a for t, a in tags if t == "input" and a.get("type") == "range"}
    assert sliders["/hamba/blend"]["min"] == "0"
    assert sliders["/hamba/blend"]["max"] == "1"
    assert sliders["/hamba/reactivity"]["max"] == "2"
    assert sliders["/hamba/blend"]["value"] == "0.3"
    numbers = {a["data-osc"] for t, a in tags if t == "input" and a.get("type") == "number"}
    assert "/hamba/seed" in numbers
    toggles = {a["data-osc"] for t, a in tags if a.get("role") == "switch"}
    assert toggles == {"/hamba/pause", "/hamba/coherence"}
    choices: dict[str | None, list[str]] = {}
    group: str | None = None
    for t, a in tags:
        value = a.get("data-value")
        if t == "div" and "choices" in (a.get("class") or "").split():
            group = a["data-osc"]
        elif t == "button" and value:
            choices.setdefault(group, []).append(value)
    assert choices["/hamba/preset"] == ["fast", "balanced", "quality"]
    texts = {a["data-osc"] for t, a in tags if t == "textarea"}
    assert {"/hamba/prompt", "/hamba/negative_prompt"} | {
        f"/hamba/prompt/chroma/{i}" for i in range(12)
    } == texts
    config = json.loads(next(a["data-config"] for t, a in tags if t == "body") or "{}")
    assert config["listen"] == listened_addresses()
    assert config["tokenRequired"] is False
    assert "stage left" in body.decode()


def test_widgets_follow_the_schema_not_a_list() -> None:
    """A new control in the schema gets a widget by its type alone."""
    from dataclasses import replace

    blend = next(e for e in SCHEMA if e.address == "/hamba/blend")
    extra = replace(blend, address="/hamba/new_knob", control="new_knob")
    flag = replace(
        next(e for e in SCHEMA if e.address == "/hamba/pause"),
        address="/hamba/new_flag",
        control="new_flag",
    )
    kinds = {w.entry.address: w.kind for w in control_widgets([*SCHEMA, extra, flag])}
    assert kinds["/hamba/new_knob"] == "slider"
    assert kinds["/hamba/new_flag"] == "toggle"
    meters = {w.entry.address: w.kind for w in meter_widgets()}
    assert meters["/hamba/audio/beat"] == "flash"
    assert meters["/hamba/audio/chroma"] == "bars"
    assert meters["/hamba/audio/energy"] == "bar"
    assert meters["/hamba/status/drops"] == "readout"


def test_root_stays_oscquery_and_static_files_are_served(served: OscQueryServer) -> None:
    status, body, headers = get(base(served) + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["FULL_PATH"] == "/"
    status, _, headers = get(base(served) + "/ui")
    assert status == 302
    assert headers["Location"] == "/ui/"
    status, script, headers = get(base(served) + "/ui/static/app.js")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert b"LISTEN" in script
    assert get(base(served) + "/ui/static/../../etc/passwd")[0] == 404
    assert get(base(served) + "/ui/static/nothing.js")[0] == 404
    status, tosc, _ = get(base(served) + "/ui/layouts/touchosc.tosc")
    assert status == 200
    assert tosc[:1] == b"\x78"  # a zlib stream
    status, session, _ = get(base(served) + "/ui/layouts/open-stage-control.json")
    assert status == 200
    assert json.loads(session)["type"] == "session"


def test_a_token_guards_the_page_and_the_preview(store: ControlStore, room: ControlRoom) -> None:
    with OscQueryServer(
        store, osc_port=9000, advertise=False, mounts=[room], token=TOKEN
    ) as server:
        status, body, _ = get(base(server) + "/ui/")
        assert status == 401
        assert b'name="token"' in body  # a form asks for it
        status, body, _ = get(base(server) + "/ui/?token=nope")
        assert status == 401
        assert b"not the one" in body
        assert get(base(server) + "/ui/preview.mjpeg")[0] == 401
        status, _, headers = get(base(server) + f"/ui/?token={TOKEN}")
        assert status == 302
        assert headers["Location"] == "/ui/"  # the token leaves the URL
        cookie = headers["Set-Cookie"]
        assert f"hamba_token={TOKEN}" in cookie
        assert "HttpOnly" in cookie
        status, body, _ = get(base(server) + "/ui/", {"Cookie": cookie.split(";")[0]})
        assert status == 200
        assert b"tokenRequired&quot;: true" in body
        # OSCQuery's read-only JSON stays open for discovery
        assert get(base(server) + "/hamba/blend?VALUE")[0] == 200


def frame(value: int, size: tuple[int, int] = (720, 1280)) -> np.ndarray:
    image = np.zeros((*size, 4), np.uint8)
    image[..., 0] = value
    image[: size[0] // 2, :, 1] = 255 - value
    image[..., 3] = 255
    return image


def test_preview_encodes_only_while_watched_at_most_ten_a_second() -> None:
    clock = [0.0]
    feed = PreviewFeed()
    output = PreviewOutput(feed, clock=lambda: clock[0])
    output.open(1280, 720, 30.0)
    for i in range(30):
        output.publish(frame(i), i, i / 30)
        clock[0] += 1 / 30
    # nobody watches: nothing encoded
    assert feed.encoded == 0
    assert feed.latest() == (0, None)
    feed._watchers = 1  # a watcher, as the MJPEG handler counts one
    for i in range(30):  # one second of frames at 30 fps
        output.publish(frame(i), i, i / 30)
        clock[0] += 1 / 30
    assert 9 <= feed.encoded <= 10
    image = Image.open(io.BytesIO(feed.latest()[1] or b""))
    assert image.format == "JPEG"
    assert image.size == (512, 288)
    assert preview_size(256, 256) == (256, 256)
    assert preview_size(640, 2000)[1] == MAX_SIZE


def read_mjpeg_frames(port: int, count: int, timeout: float = 10.0) -> list[bytes]:
    """``count`` JPEG parts of the MJPEG stream, read off a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /ui/preview.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        jpegs: list[bytes] = []
        while len(jpegs) < count and time.monotonic() < deadline:
            data += sock.recv(65536)
            while True:
                start = data.find(b"\xff\xd8")
                end = data.find(b"\xff\xd9", start + 2)
                if start < 0 or end < 0:
                    break
                jpegs.append(data[start : end + 2])
                data = data[end + 2 :]
        assert b"multipart/x-mixed-replace" in data or jpegs, data[:200]
        return jpegs[:count]


def test_mjpeg_stream_shows_new_frames_to_a_watcher(
    served: OscQueryServer, room: ControlRoom
) -> None:
    assert room.preview is not None
    preview = room.preview
    preview.open(640, 480, 30.0)
    stop = threading.Event()

    def render() -> None:  # stands in for the output lane: frames keep coming
        i = 0
        while not stop.is_set():
            preview.publish(frame(i * 40 % 256, (480, 640)), i, i / 30)
            i += 1
            time.sleep(1 / 30)

    renderer = threading.Thread(target=render)
    renderer.start()
    try:
        jpegs = read_mjpeg_frames(served.http_port, 3)
    finally:
        stop.set()
        renderer.join()
    images = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    assert len(images) == 3
    assert images[0].shape == (384, 512, 3)
    assert any(not np.array_equal(images[0], other) for other in images[1:])
    wait_for(lambda: room.feed.watchers == 0)  # the viewer left: encoding stops
    before = room.feed.encoded
    preview.publish(frame(7, (480, 640)), 999, 0.0)
    assert room.feed.encoded == before
