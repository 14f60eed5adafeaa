"""Spout cannot run on Linux: platform gating, then the calls made with a stand-in library.

The stand-in is a hand-written ``SpoutGL`` module injected into ``sys.modules``, following
SpoutGL 0.1.1 (a pybind11 module, read from its wheel): ``SpoutSender()`` with
``createOpenGL()``, ``closeOpenGL()``, ``setSenderName(name)``, ``sendImage(buffer, width,
height, glFormat, invert, hostFbo)`` taking positional arguments only, ``setFrameSync(name)``,
``releaseSender()``, and ``SpoutGL.enums.GL_RGBA``. A second stand-in, without
``createOpenGL``, checks the hidden glfw window fallback. They record calls; they render nothing.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import bridge.outputs.publisher as publisher
from bridge.outputs import OutputGroup, create_output
from bridge.outputs.spout import SpoutOutput
from engine.errors import OutputError

GL_RGBA = 0x1908


def spout_standin(calls: list[tuple[Any, ...]], *, create_opengl: bool = True) -> ModuleType:
    class SpoutSender:
        def setSenderName(self, name: str, /) -> None:
            calls.append(("setSenderName", name))

        def sendImage(
            self, buffer: Any, width: int, height: int, gl_format: int, invert: bool, fbo: int, /
        ) -> bool:
            view = memoryview(buffer)  # pybind11 takes the buffer protocol
            assert view.c_contiguous and view.format == "B"
            assert view.nbytes == width * height * 4
            calls.append(("sendImage", buffer, width, height, gl_format, invert, fbo))
            calls.append(("thread", threading.get_ident()))
            return True

        def setFrameSync(self, name: str, /) -> None:
            calls.append(("setFrameSync", name))

        def releaseSender(self) -> None:
            calls.append(("releaseSender",))

    if create_opengl:

        def create(self: SpoutSender) -> bool:
            calls.append(("createOpenGL", threading.get_ident()))
            return True

        def close(self: SpoutSender) -> bool:
            calls.append(("closeOpenGL",))
            return True

        SpoutSender.createOpenGL = create  # type: ignore[attr-defined]
        SpoutSender.closeOpenGL = close  # type: ignore[attr-defined]

    module, enums = ModuleType("SpoutGL"), ModuleType("SpoutGL.enums")
    enums.GL_RGBA = GL_RGBA  # type: ignore[attr-defined]
    module.SpoutSender = SpoutSender  # type: ignore[attr-defined]
    module.enums = enums  # type: ignore[attr-defined]
    return module


def glfw_standin(calls: list[tuple[Any, ...]]) -> ModuleType:
    """pyGLFW's module-level functions, as far as a hidden window needs them."""

    def init() -> bool:
        calls.append(("glfw.init",))
        return True

    def window_hint(hint: int, value: int) -> None:
        calls.append(("glfw.window_hint", hint, value))

    def create_window(width: int, height: int, title: str, monitor: Any, share: Any) -> str:
        calls.append(("glfw.create_window", title))
        return "window"

    def make_context_current(window: Any) -> None:
        calls.append(("glfw.make_context_current", window))

    def destroy_window(window: Any) -> None:
        calls.append(("glfw.destroy_window", window))

    def terminate() -> None:
        calls.append(("glfw.terminate",))

    glfw = ModuleType("glfw")
    for func in (init, window_hint, create_window, make_context_current, destroy_window, terminate):
        setattr(glfw, func.__name__, func)
    glfw.VISIBLE = 0x20004  # type: ignore[attr-defined]
    return glfw


@pytest.fixture
def on_windows(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(publisher, "current_platform", lambda: "win32")
    monkeypatch.setitem(sys.modules, "SpoutGL", spout_standin(calls))
    return calls


def test_spout_on_linux_names_platform_and_alternatives() -> None:
    with pytest.raises(OutputError) as err:
        create_output("spout")
    message = str(err.value)
    assert "'spout'" in message and "needs Windows (this is Linux)" in message
    assert "outputs that work here: ndi, shm, file:PATH.mp4, png:DIR" in message


def test_calls_per_frame_follow_the_spoutgl_api(on_windows: list[tuple[Any, ...]]) -> None:
    out = create_output("auto", name="stage")
    assert isinstance(out, SpoutOutput) and out.name == "spout:stage"
    frame = np.arange(48 * 64 * 4, dtype=np.uint32).astype(np.uint8).reshape(48, 64, 4)
    with out:
        out.open(64, 48, 30.0)
        out.publish(frame, 0, 0.0)
        out.publish(frame[:, :], 1, 1 / 30)
    names = [c[0] for c in on_windows if c[0] != "thread"]
    assert names == [
        "createOpenGL",
        "setSenderName",
        "sendImage",
        "setFrameSync",
        "sendImage",
        "setFrameSync",
        "releaseSender",
        "closeOpenGL",
    ]
    sends = [c for c in on_windows if c[0] == "sendImage"]
    assert all(c[2:] == (64, 48, GL_RGBA, False, 0) for c in sends)
    assert sends[0][1] is frame
    assert ("setSenderName", "stage") in on_windows and ("setFrameSync", "stage") in on_windows


def test_hidden_glfw_window_when_spoutgl_cannot_make_a_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(publisher, "current_platform", lambda: "win32")
    monkeypatch.setitem(sys.modules, "SpoutGL", spout_standin(calls, create_opengl=False))
    monkeypatch.setitem(sys.modules, "glfw", glfw_standin(calls))
    with create_output("spout", name="hidden") as out:
        out.open(8, 8, 30.0)
        out.publish(np.zeros((8, 8, 4), np.uint8), 0, 0.0)
    names = [c[0] for c in calls if c[0] != "thread"]
    assert names[:5] == [
        "glfw.init",
        "glfw.window_hint",
        "glfw.create_window",
        "glfw.make_context_current",
        "setSenderName",
    ]
    assert ("glfw.window_hint", 0x20004, False) in calls  # invisible
    assert names[-3:] == ["releaseSender", "glfw.destroy_window", "glfw.terminate"]


def test_missing_glfw_fallback_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "current_platform", lambda: "win32")
    monkeypatch.setitem(sys.modules, "SpoutGL", spout_standin([], create_opengl=False))
    monkeypatch.setitem(sys.modules, "glfw", None)
    out = create_output("spout")
    with pytest.raises(OutputError, match=r"'glfw'.*pip install glfw"):
        out.open(8, 8, 30.0)


def test_context_and_sends_share_one_thread_inside_a_group(
    on_windows: list[tuple[Any, ...]],
) -> None:
    with OutputGroup([create_output("spout")]) as group:
        group.open(8, 8, 30.0)
        for index in range(3):
            group.publish(np.zeros((8, 8, 4), np.uint8), index, 0.0)
            assert group.flush(10)
    threads = {c[1] for c in on_windows if c[0] in ("createOpenGL", "thread")}
    assert len(threads) == 1 and threads != {threading.get_ident()}
