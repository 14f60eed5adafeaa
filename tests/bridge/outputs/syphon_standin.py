"""A stand-in for syphon-python: Syphon cannot run on Linux, so its calls are checked against this.

A hand-written ``syphon`` package for ``sys.modules``; its classes and functions copy the
signatures of syphon-python 0.1.1 and 0.2.0 (read from their wheels):
``SyphonMetalServer(name, device=None, command_queue=None)``, ``publish_frame_texture(texture,
region=None, size=None, is_flipped=False, command_buffer=None, auto_commit=True)``,
``utils.raw.create_mtl_texture(device, width, height, pixel_format=RGBA8Unorm)``,
``utils.numpy.copy_image_to_mtl_texture(image, texture)`` (``image.tobytes()`` into
``replaceRegion``: row 0 first), ``SyphonServerDirectory()`` with ``run_loop_interval`` and
``update_run_loop()``. A wrong name, argument order or keyword fails here.

It also models what the framework does with the pixels, as read from Syphon-Framework's source
(``SyphonMetalServer.m``, ``SyphonServerRendererMetal.m``): the shared surface gets the texture's
rows in order when ``flipped`` is NO, reversed when YES; an OpenGL client (Resolume,
TouchDesigner, VDMX) shows the surface's first row at the bottom. :attr:`Calls.gl_view` is the
picture such a client would show, top row first. It records every call with its thread; it
renders nothing.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import bridge.outputs.publisher as publisher

MTL_PIXEL_FORMAT_RGBA8_UNORM = 70


class Calls(list[tuple[Any, ...]]):
    """Every call made to the stand-in, in order; the last published surface and its GL view."""

    surface: np.ndarray | None = None

    def names(self) -> list[str]:
        return [call[0] for call in self]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self if call[0] == name]

    @property
    def gl_view(self) -> np.ndarray:
        """What an OpenGL client shows, top row first: the surface's first row is its bottom."""
        assert self.surface is not None, "nothing was published"
        return self.surface[::-1]


def syphon_standin(calls: Calls) -> dict[str, ModuleType]:
    """The ``syphon`` package and its submodules, recording into ``calls``."""

    class Texture:
        def __init__(self, width: int, height: int, pixel_format: int) -> None:
            self._w, self._h, self.pixel_format = width, height, pixel_format
            self.rows = np.zeros((height, width, 4), np.uint8)  # row 0 = Metal's top row

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
            assert isinstance(is_flipped, bool)  # PyObjC hands it on as the BOOL flipped:
            # flipped:NO copies row for row, flipped:YES reverses the rows
            calls.surface = texture.rows[::-1].copy() if is_flipped else texture.rows.copy()
            calls.append(("publish_frame_texture", texture, is_flipped, threading.get_ident()))

        def stop(self) -> None:
            calls.append(("stop", threading.get_ident()))

    class SyphonServerDirectory:
        def __init__(self) -> None:
            self.run_loop_interval = 1.0  # syphon-python's default: one second per call
            calls.append(("SyphonServerDirectory", threading.get_ident()))

        def update_run_loop(self) -> None:
            # NSRunLoop.currentRunLoop(): the calling thread's run loop
            calls.append(("update_run_loop", self.run_loop_interval, threading.get_ident()))

    def create_mtl_texture(
        device: Any, width: int, height: int, pixel_format: int = MTL_PIXEL_FORMAT_RGBA8_UNORM
    ) -> Texture:
        calls.append(("create_mtl_texture", device, width, height, pixel_format))
        return Texture(width, height, pixel_format)

    def copy_image_to_mtl_texture(image: np.ndarray, texture: Texture) -> None:
        # the library's own checks
        assert len(image.shape) == 3
        assert image.shape[2] == 4
        assert image.shape[:2] == (texture.height(), texture.width())
        # image.tobytes() into replaceRegion: the first bytes become the texture's first row
        texture.rows = np.frombuffer(image.tobytes(), np.uint8).reshape(texture.rows.shape)
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


def pretend_macos(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Pretend to be macOS with syphon-python installed (the stand-in); the calls it records."""
    calls = Calls()
    monkeypatch.setattr(publisher, "current_platform", lambda: "darwin")
    for module_name, module in syphon_standin(calls).items():
        monkeypatch.setitem(sys.modules, module_name, module)
    return calls
