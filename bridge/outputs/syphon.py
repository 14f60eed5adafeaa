"""A Syphon server (syphon-python, Metal) for macOS hosts: TouchDesigner, Resolume, VDMX, OBS.

Orientation, read from Syphon-Framework's source (this cannot run on Linux): the Metal server
(``SyphonMetalServer.m``) copies the published texture into the shared IOSurface row for row
when ``flipped`` is NO (a blit, or ``SyphonServerRendererMetal`` with ``flip:NO``, which maps
the texture's first row to the surface's first row) and reverses the rows when it is YES. The
OpenGL side of Syphon, through which Resolume, TouchDesigner and VDMX receive, reads the
surface's first row as the bottom of the picture (OpenGL's convention; ``SyphonOpenGLServer``
writes it that way when ``flipped`` is NO). A frame here runs top to bottom (row 0 is the top),
and ``copy_image_to_mtl_texture`` uploads it as it is (``replaceRegion``, row 0 first), so it
is published with ``is_flipped=True``: the surface then holds the bottom row first and OpenGL
clients show it upright. syphon-python's own video example publishes top-down OpenCV frames
the same way (``examples/MetalServerVideoExample.py``).

Discovery: a receiver started after the server asks for servers through
``NSDistributedNotificationCenter``, whose notifications are delivered on the main thread's run
loop. A headless process runs no Cocoa event loop, so :meth:`SyphonOutput.pump` gives that run
loop one pass without waiting; the daemon calls it from its main thread between frames
(:meth:`~bridge.outputs.group.OutputGroup.pump`). The server itself lives on the output's own
thread, which opens, publishes and closes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.outputs.publisher import PublisherBase, RGBAImage, import_native

_INSTALL = "pip install syphon-python (macOS only)"

PUMP_INTERVAL_S = 0.0
"""``run_loop_interval`` of each pump: ``runMode:beforeDate:`` with a date already reached makes
one pass over the run loop (at most one source handled) and returns: it never waits."""


def _syphon() -> Any:
    return import_native("syphon", output="syphon", install=_INSTALL)


def probe() -> str:
    """Raise MissingBackendError when syphon-python cannot load; else a short note."""
    _syphon()
    return "syphon-python, Metal"


class SyphonOutput(PublisherBase):
    """A Syphon server named ``name``, upright in OpenGL clients (see the module docstring).

    ``flipped=True`` says the frames arrive bottom-up (OpenGL row order); they are then
    published as they are. A Metal client that shows the default output upside down wants it.
    """

    def __init__(self, name: str = "hambaMetal", *, flipped: bool = False) -> None:
        super().__init__(f"syphon:{name}")
        self.server_name = name
        self.flipped = flipped
        self._syphon = _syphon()
        self._server: Any = None
        self._texture: Any = None
        self._copy: Any = None
        self._directory: Any = None  # made by the first pump, on the pumping (main) thread

    def _open(self, width: int, height: int, fps: float) -> None:
        syphon = self._syphon
        raw = import_native("syphon.utils.raw", output="syphon", install=_INSTALL)
        numpy_utils = import_native("syphon.utils.numpy", output="syphon", install=_INSTALL)
        server = syphon.SyphonMetalServer(self.server_name)
        self._texture = raw.create_mtl_texture(server.device, width, height)
        self._copy = numpy_utils.copy_image_to_mtl_texture
        self._server = server

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self._copy(frame, self._texture)
        # top-down rows: the server reverses them so OpenGL clients (row 0 = bottom) see it upright
        self._server.publish_frame_texture(self._texture, is_flipped=not self.flipped)

    def pump(self) -> None:
        """One pass of the calling thread's run loop, no waiting: call it from the main thread."""
        if self._server is None:
            return
        directory = self._directory
        if directory is None:
            directory = self._syphon.SyphonServerDirectory()
            directory.run_loop_interval = PUMP_INTERVAL_S
            self._directory = directory
        directory.update_run_loop()

    def _close(self) -> None:
        server, self._server = self._server, None
        self._texture = self._copy = None
        if server is not None:
            server.stop()


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    flipped: bool = False,
) -> SyphonOutput:
    """Registry factory for the ``syphon`` spec."""
    return SyphonOutput(name, flipped=flipped)
