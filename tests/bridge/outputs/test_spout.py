"""Spout cannot run on Linux: platform gating, then the calls made with a stand-in library.

The stand-in is a hand-written ``SpoutGL`` module injected into ``sys.modules``, following
SpoutGL 0.1.1 (a pybind11 module, read from its wheel and from github.com/jlai/Python-SpoutGL,
src/PySpoutGL.cpp): ``SpoutSender()`` with ``createOpenGL()``, ``closeOpenGL()``,
``setSenderName(name)``, ``sendImage(buffer, width, height, glFormat, invert, hostFbo)`` taking
positional arguments only, ``setFrameSync(name)``, ``releaseSender()``, and
``SpoutGL.enums.GL_RGBA``. Like the Spout SDK (``spoutGL::CreateOpenGL``), its ``createOpenGL``
makes a context current on the calling thread only, and its other calls fail on a thread where
no context is current. It records every call with its thread; it renders nothing.
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

Calls = list[tuple[Any, ...]]


def spout_standin(calls: Calls) -> ModuleType:
    current = threading.local()  # the WGL context current on each thread

    def record(name: str, *args: Any, needs_context: bool = True) -> None:
        calls.append((name, *args, threading.get_ident()))
        if needs_context:
            assert getattr(current, "context", False), f"{name} without a current GL context"

    class SpoutSender:
        def __init__(self) -> None:
            record("SpoutSender", needs_context=False)

        def createOpenGL(self) -> bool:
            record("createOpenGL", needs_context=False)
            current.context = True
            return True

        def closeOpenGL(self) -> bool:
            record("closeOpenGL")
            current.context = False
            return True

        def setSenderName(self, name: str, /) -> None:
            record("setSenderName", name, needs_context=False)

        def sendImage(
            self, buffer: Any, width: int, height: int, gl_format: int, invert: bool, fbo: int, /
        ) -> bool:
            view = memoryview(buffer)  # pybind11 takes the buffer protocol
            assert view.c_contiguous
            assert view.format == "B"
            assert view.nbytes == width * height * 4
            record("sendImage", buffer, width, height, gl_format, invert, fbo)
            return True

        def setFrameSync(self, name: str, /) -> None:
            record("setFrameSync", name)

        def releaseSender(self) -> None:
            record("releaseSender")

    module, enums = ModuleType("SpoutGL"), ModuleType("SpoutGL.enums")
    enums.GL_RGBA = GL_RGBA  # type: ignore[attr-defined]
    module.SpoutSender = SpoutSender  # type: ignore[attr-defined]
    module.enums = enums  # type: ignore[attr-defined]
    return module


@pytest.fixture
def on_windows(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls: Calls = []
    monkeypatch.setattr(publisher, "current_platform", lambda: "win32")
    monkeypatch.setitem(sys.modules, "SpoutGL", spout_standin(calls))
    monkeypatch.setitem(sys.modules, "glfw", None)  # not a dependency: must never be needed
    return calls


def test_spout_on_linux_names_platform_and_alternatives() -> None:
    with pytest.raises(OutputError) as err:
        create_output("spout")
    message = str(err.value)
    assert "'spout'" in message
    assert "needs Windows (this is Linux)" in message
    assert "outputs that work here:" in message
    assert "shm" in message


def test_calls_per_frame_follow_the_spoutgl_api(on_windows: Calls) -> None:
    out = create_output("auto", name="stage")
    assert isinstance(out, SpoutOutput)
    assert out.name == "spout:stage"
    frame = np.arange(48 * 64 * 4, dtype=np.uint32).astype(np.uint8).reshape(48, 64, 4)
    with out:
        out.open(64, 48, 30.0)
        out.publish(frame, 0, 0.0)
        out.publish(frame[:, :], 1, 1 / 30)
    assert [c[0] for c in on_windows] == [
        "SpoutSender",
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
    assert all(c[2:-1] == (64, 48, GL_RGBA, False, 0) for c in sends)
    assert sends[0][1] is frame
    assert ("setSenderName", "stage") in [c[:2] for c in on_windows]
    assert ("setFrameSync", "stage") in [c[:2] for c in on_windows]


def test_building_the_output_calls_nothing_in_spoutgl(on_windows: Calls) -> None:
    create_output("spout")
    assert on_windows == []  # the sender is made by open(), on the thread that will send


def test_every_spoutgl_call_happens_on_the_sending_thread_inside_a_group(
    on_windows: Calls,
) -> None:
    with OutputGroup([create_output("spout")]) as group:
        group.open(8, 8, 30.0)
        for index in range(3):
            group.publish(np.zeros((8, 8, 4), np.uint8), index, 0.0)
            assert group.flush(10)
    assert [c[0] for c in on_windows][-2:] == ["releaseSender", "closeOpenGL"]
    threads = {c[-1] for c in on_windows}
    sending = {c[-1] for c in on_windows if c[0] == "sendImage"}
    assert threads == sending  # one thread for everything, and it is the one that sends
    assert len(threads) == 1
    assert threads != {threading.get_ident()}


def test_sending_from_another_thread_is_refused(on_windows: Calls) -> None:
    out = create_output("spout")
    opener = threading.Thread(target=out.open, args=(8, 8, 30.0))
    opener.start()
    opener.join()
    with pytest.raises(OutputError, match="another thread"):
        out.publish(np.zeros((8, 8, 4), np.uint8), 0, 0.0)
    assert [c[0] for c in on_windows] == ["SpoutSender", "createOpenGL", "setSenderName"]
