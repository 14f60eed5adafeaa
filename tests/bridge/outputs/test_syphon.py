"""Syphon cannot run on Linux: platform gating, then the calls made with a stand-in library.

The stand-in (tests/bridge/outputs/syphon_standin.py) copies syphon-python's signatures and
models what Syphon-Framework does with the rows, as read from its source; it renders nothing.
What it checks is the orientation we send and the threads we call from, not Syphon itself.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import bridge.outputs.publisher as publisher
import bridge.outputs.syphon as syphon_output
from bridge.outputs import OutputGroup, create_output
from bridge.outputs.syphon import SyphonOutput
from engine.errors import OutputError
from tests.bridge.outputs.syphon_standin import MTL_PIXEL_FORMAT_RGBA8_UNORM, Calls, pretend_macos


@pytest.fixture
def on_macos(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return pretend_macos(monkeypatch)


def gradient(height: int, width: int) -> np.ndarray:
    """Each row its own value: row 0 (the top) is 0, the bottom row the largest."""
    frame = np.zeros((height, width, 4), np.uint8)
    frame[..., 0] = np.arange(height, dtype=np.uint8)[:, None] * 5
    frame[..., 3] = 255
    return frame


def test_syphon_on_linux_names_platform_and_alternatives() -> None:
    with pytest.raises(OutputError) as err:
        create_output("syphon")
    message = str(err.value)
    assert "'syphon'" in message
    assert "needs macOS (this is Linux)" in message
    assert "outputs that work here:" in message
    assert "shm" in message


def test_missing_syphon_python_on_macos_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "current_platform", lambda: "darwin")
    monkeypatch.setitem(sys.modules, "syphon", None)  # makes `import syphon` fail
    with pytest.raises(OutputError) as err:
        create_output("auto")
    message = str(err.value)
    assert "'auto' (syphon on macOS)" in message
    assert "pip install syphon-python" in message
    assert "shm" in message


def test_calls_per_frame_follow_the_syphon_python_api(on_macos: Calls) -> None:
    out = create_output("auto", name="stage")
    assert isinstance(out, SyphonOutput)
    assert out.name == "syphon:stage"
    frames = [np.full((48, 64, 4), i, np.uint8) for i in range(2)]
    with out:
        out.open(64, 48, 30.0)
        for index, frame in enumerate(frames):
            out.publish(frame, index, index / 30)
    assert on_macos.names() == [
        "SyphonMetalServer",
        "create_mtl_texture",
        *["copy_image_to_mtl_texture", "publish_frame_texture"] * 2,
        "stop",
    ]
    assert on_macos[0][1] == "stage"
    assert on_macos[1][1:] == ("MTLDevice", 64, 48, MTL_PIXEL_FORMAT_RGBA8_UNORM)
    copies = [c[1] for c in on_macos.of("copy_image_to_mtl_texture")]
    for sent, copied in zip(frames, copies, strict=True):
        assert copied is sent  # no extra copy on our side
        assert copied.dtype == np.uint8
        assert copied.flags.c_contiguous


def test_frames_stand_upright_in_an_opengl_client(on_macos: Calls) -> None:
    frame = gradient(48, 64)
    with create_output("syphon") as out:
        out.open(64, 48, 30.0)
        out.publish(frame, 0, 0.0)
    (uploaded,) = [c[1] for c in on_macos.of("copy_image_to_mtl_texture")]
    np.testing.assert_array_equal(uploaded, frame)  # uploaded top row first, not pre-flipped
    ((_, _, is_flipped, _),) = on_macos.of("publish_frame_texture")
    assert is_flipped is True  # the server reverses the rows into the surface
    np.testing.assert_array_equal(on_macos.gl_view, frame)  # top row at the top


def test_bottom_up_frames_are_published_as_they_are(on_macos: Calls) -> None:
    frame = gradient(8, 8)
    with SyphonOutput("gl", flipped=True) as out:
        out.open(8, 8, 30.0)
        out.publish(frame[::-1].copy(), 0, 0.0)  # a caller that already has OpenGL row order
    ((_, _, is_flipped, _),) = on_macos.of("publish_frame_texture")
    assert is_flipped is False
    np.testing.assert_array_equal(on_macos.gl_view, frame)


def test_server_lives_on_one_thread_inside_a_group(on_macos: Calls) -> None:
    with OutputGroup([create_output("syphon")]) as group:
        group.open(8, 8, 30.0)
        group.publish(np.zeros((8, 8, 4), np.uint8), 0, 0.0)
        assert group.flush(10)
    names = {"SyphonMetalServer", "copy_image_to_mtl_texture", "publish_frame_texture", "stop"}
    threads = {c[-1] for c in on_macos if c[0] in names}
    assert len(threads) == 1
    assert threads != {threading.get_ident()}


def test_discovery_is_pumped_on_the_calling_thread_only_and_never_waits(
    on_macos: Calls,
) -> None:
    with OutputGroup([create_output("syphon")]) as group:
        group.open(8, 8, 30.0)
        for index in range(3):
            group.publish(np.zeros((8, 8, 4), np.uint8), index, index / 30)
            assert group.flush(10)
        assert on_macos.of("update_run_loop") == []  # the output's own thread never pumps
        for _ in range(4):
            group.pump()  # the render loop's thread, between frames
    main = threading.get_ident()
    pumps = on_macos.of("update_run_loop")
    assert [(interval, thread) for _, interval, thread in pumps] == [(0.0, main)] * 4
    assert syphon_output.PUMP_INTERVAL_S == 0.0  # one pass of the run loop, no waiting
    assert [c[1] for c in on_macos.of("SyphonServerDirectory")] == [main]  # made once, here
    server_threads = {c[-1] for c in on_macos.of("publish_frame_texture")}
    assert main not in server_threads


def test_pump_before_open_and_after_close_does_nothing(on_macos: Calls) -> None:
    out = create_output("syphon")
    assert isinstance(out, SyphonOutput)
    out.pump()
    out.open(8, 8, 30.0)
    out.close()
    out.pump()
    assert on_macos.of("update_run_loop") == []
