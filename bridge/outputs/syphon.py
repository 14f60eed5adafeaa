"""A Syphon server (syphon-python, Metal) for macOS hosts: TouchDesigner, Resolume, VDMX, OBS.

Each frame is copied into one RGBA Metal texture and published. A headless process has no
Cocoa event loop, so after each frame the server directory's run loop is given a turn (with no
wait), or receivers would never discover the server. The server lives on the thread that
opened it; :class:`~bridge.outputs.base.OutputGroup` opens, publishes and closes on one thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.outputs.publisher import PublisherBase, RGBAImage, import_native

_INSTALL = "pip install syphon-python (macOS only)"


def _syphon() -> Any:
    return import_native("syphon", output="syphon", install=_INSTALL)


def probe() -> str:
    """Raise MissingBackendError when syphon-python cannot load; else a short note."""
    _syphon()
    return "syphon-python, Metal"


class SyphonOutput(PublisherBase):
    """A Syphon server named ``name``; ``flipped`` marks the image as bottom-up."""

    def __init__(self, name: str = "hambaMetal", *, flipped: bool = False) -> None:
        super().__init__(f"syphon:{name}")
        self.server_name = name
        self.flipped = flipped
        self._syphon = _syphon()
        self._server: Any = None
        self._texture: Any = None
        self._directory: Any = None
        self._copy: Any = None

    def _open(self, width: int, height: int, fps: float) -> None:
        syphon = self._syphon
        raw = import_native("syphon.utils.raw", output="syphon", install=_INSTALL)
        numpy_utils = import_native("syphon.utils.numpy", output="syphon", install=_INSTALL)
        server = syphon.SyphonMetalServer(self.server_name)
        self._texture = raw.create_mtl_texture(server.device, width, height)
        self._copy = numpy_utils.copy_image_to_mtl_texture
        directory_cls = getattr(syphon, "SyphonServerDirectory", None)
        if directory_cls is not None:
            directory = directory_cls()
            directory.run_loop_interval = 0.0  # one pass over pending events, no waiting
            self._directory = directory
        self._server = server

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self._copy(frame, self._texture)
        self._server.publish_frame_texture(self._texture, is_flipped=self.flipped)
        if self._directory is not None:
            self._directory.update_run_loop()

    def _close(self) -> None:
        server, self._server = self._server, None
        self._texture = self._directory = self._copy = None
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
