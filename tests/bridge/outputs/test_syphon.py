"""Syphon cannot run on Linux: platform gating, then the calls made with a stand-in library.

The stand-in is a hand-written ``syphon`` package injected into ``sys.modules``; its classes
and functions copy the signatures of syphon-python 0.1.1 (read from its wheel:
``SyphonMetalServer(name, device=None, command_queue=None)``, ``publish_frame_texture(texture,
region=None, size=None, is_flipped=False, command_buffer=None, auto_commit=True)``,
``utils.raw.create_mtl_texture(device, width, height, pixel_format=RGBA8Unorm)``,
``utils.numpy.copy_image_to_mtl_texture(image, texture)``, ``SyphonServerDirectory()`` with
``run_loop_interval`` and ``update_run_loop()``), so a wrong name, argument order or keyword
fails here. It records each call; it renders nothing.
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
from bridge.outputs.syphon import SyphonOutput
from engine.errors import OutputError

MTL_PIXEL_FORMAT_RGBA8_UNORM = 70


class Calls(list[tuple[Any, ...]]):
    def names(self) -> list[str]:
        return [call[0] for call in self]


def syphon_standin(calls: Calls) -> dict[str, ModuleType]:
    class Texture:
        def __init__(self, width: int, height: int, pixel_format: int) -> None:
            self._w, self._h, self.pixel_format = width, height, pixel_format

        def width(self) -> int:
            return self._w

        def height(self) -> int:
            return self._h

    class SyphonMetalServer:
        def __init__(self, name: str, device: Any = None, command_queue: Any = None) -> None:
            self.name, self.device = name, device or "MTLDevice"
            calls.append(("SyphonMetalServer", name, threading.get_ident()))

        def publish_frame_texture(
            self,
            texture: Texture,
            region: Any = None,
            size: Any = None,
            is_flipped: bool = False,
            command_buffer: Any = None,
            auto_commit: bool = True,
        ) -> None:
            assert isinstance(texture, Texture)
            calls.append(("publish_frame_texture", texture, is_flipped, threading.get_ident()))

        def stop(self) -> None:
            calls.append(("stop", threading.get_ident()))

    class SyphonServerDirectory:
        def __init__(self) -> None:
            self.run_loop_interval = 1.0

        def update_run_loop(self) -> None:
            calls.append(("update_run_loop", self.run_loop_interval))

    def create_mtl_texture(
        device: Any, width: int, height: int, pixel_format: int = MTL_PIXEL_FORMAT_RGBA8_UNORM
    ) -> Texture:
        calls.append(("create_mtl_texture", device, width, height, pixel_format))
        return Texture(width, height, pixel_format)

    def copy_image_to_mtl_texture(image: np.ndarray, texture: Texture) -> None:
        assert len(image.shape) == 3 and image.shape[2] == 4  # the library's own checks
        assert image.shape[:2] == (texture.height(), texture.width())
        calls.append(("copy_image_to_mtl_texture", image, threading.get_ident()))

    syphon = ModuleType("syphon")
    syphon.SyphonMetalServer = SyphonMetalServer  # type: ignore[attr-defined]
    syphon.SyphonServerDirectory = SyphonServerDirectory  # type: ignore[attr-defined]
    utils, raw, numpy_utils = (
        ModuleType("syphon.utils"),
        ModuleType("syphon.utils.raw"),
        ModuleType("syphon.utils.numpy"),
    )
    raw.create_mtl_texture = create_mtl_texture  # type: ignore[attr-defined]
    numpy_utils.copy_image_to_mtl_texture = copy_image_to_mtl_texture  # type: ignore[attr-defined]
    syphon.utils = utils  # type: ignore[attr-defined]
    utils.raw, utils.numpy = raw, numpy_utils  # type: ignore[attr-defined]
    return {
        "syphon": syphon,
        "syphon.utils": utils,
        "syphon.utils.raw": raw,
        "syphon.utils.numpy": numpy_utils,
    }


@pytest.fixture
def on_macos(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Pretend to be macOS with syphon-python installed (the stand-in above)."""
    calls = Calls()
    monkeypatch.setattr(publisher, "current_platform", lambda: "darwin")
    for module_name, module in syphon_standin(calls).items():
        monkeypatch.setitem(sys.modules, module_name, module)
    return calls


def test_syphon_on_linux_names_platform_and_alternatives() -> None:
    with pytest.raises(OutputError) as err:
        create_output("syphon")
    message = str(err.value)
    assert "'syphon'" in message and "needs macOS (this is Linux)" in message
    assert "outputs that work here: ndi, shm, file:PATH.mp4, png:DIR" in message


def test_missing_syphon_python_on_macos_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "current_platform", lambda: "darwin")
    monkeypatch.setitem(sys.modules, "syphon", None)  # makes `import syphon` fail
    with pytest.raises(OutputError) as err:
        create_output("auto")
    message = str(err.value)
    assert "'auto' (syphon on macOS)" in message and "pip install syphon-python" in message
    assert "outputs that work here: ndi, shm" in message


def test_calls_per_frame_follow_the_syphon_python_api(on_macos: Calls) -> None:
    out = create_output("auto", name="stage")
    assert isinstance(out, SyphonOutput) and out.name == "syphon:stage"
    frames = [np.full((48, 64, 4), i, np.uint8) for i in range(2)]
    with out:
        out.open(64, 48, 30.0)
        for index, frame in enumerate(frames):
            out.publish(frame, index, index / 30)
    assert on_macos.names() == [
        "SyphonMetalServer",
        "create_mtl_texture",
        *["copy_image_to_mtl_texture", "publish_frame_texture", "update_run_loop"] * 2,
        "stop",
    ]
    assert on_macos[0][1] == "stage"
    assert on_macos[1][1:] == ("MTLDevice", 64, 48, MTL_PIXEL_FORMAT_RGBA8_UNORM)
    copies = [c[1] for c in on_macos if c[0] == "copy_image_to_mtl_texture"]
    for sent, copied in zip(frames, copies, strict=True):
        assert copied is sent  # no extra copy on our side
        assert copied.dtype == np.uint8 and copied.flags.c_contiguous
    published = [c for c in on_macos if c[0] == "publish_frame_texture"]
    assert all(c[2] is False for c in published)  # not flipped: rows run top to bottom
    assert all(c[1] == 0.0 for c in on_macos if c[0] == "update_run_loop")  # never waits


def test_server_lives_on_one_thread_inside_a_group(on_macos: Calls) -> None:
    with OutputGroup([create_output("syphon")]) as group:
        group.open(8, 8, 30.0)
        group.publish(np.zeros((8, 8, 4), np.uint8), 0, 0.0)
        assert group.flush(10)
    threads = {
        c[-1] for c in on_macos if c[0] != "update_run_loop" and c[0] != "create_mtl_texture"
    }
    assert len(threads) == 1 and threads != {threading.get_ident()}
