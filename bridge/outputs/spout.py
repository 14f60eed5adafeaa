"""A Spout sender (SpoutGL) for Windows hosts: TouchDesigner, Resolume, OBS.

Spout shares an OpenGL texture, so the sender needs a current OpenGL context: SpoutGL's own
``createOpenGL()`` makes a hidden one; where that method is missing a hidden glfw window
serves. The context belongs to the thread that opened the output;
:class:`~bridge.outputs.base.OutputGroup` opens, publishes and closes on one thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.outputs.publisher import PublisherBase, RGBAImage, import_native
from engine.errors import OutputError

_INSTALL = "pip install SpoutGL (Windows only)"


def _spoutgl() -> Any:
    return import_native("SpoutGL", output="spout", install=_INSTALL)


def probe() -> str:
    """Raise MissingBackendError when SpoutGL cannot load; else a short note."""
    _spoutgl()
    return "SpoutGL, OpenGL"


class SpoutOutput(PublisherBase):
    """A Spout sender named ``name``; ``invert`` flips the image vertically on send."""

    def __init__(self, name: str = "hambaMetal", *, invert: bool = False) -> None:
        super().__init__(f"spout:{name}")
        self.sender_name = name
        self.invert = invert
        self._spout = _spoutgl()
        self._sender: Any = None
        self._window: Any = None
        self._glfw: Any = None
        self._spout_gl = False  # the context came from SpoutGL's createOpenGL()

    def _open(self, width: int, height: int, fps: float) -> None:
        sender = self._spout.SpoutSender()
        self._make_context(sender)
        sender.setSenderName(self.sender_name)
        self._sender = sender

    def _make_context(self, sender: Any) -> None:
        if hasattr(sender, "createOpenGL"):
            if not sender.createOpenGL():
                raise OutputError(
                    f"output {self.name!r}: SpoutGL could not create an OpenGL context"
                )
            self._spout_gl = True
            return
        glfw = import_native("glfw", output="spout", install="pip install glfw")
        if not glfw.init():
            raise OutputError(f"output {self.name!r}: glfw could not initialise OpenGL")
        glfw.window_hint(glfw.VISIBLE, False)
        window = glfw.create_window(16, 16, self.sender_name, None, None)
        if not window:
            glfw.terminate()
            raise OutputError(f"output {self.name!r}: glfw could not open a hidden window")
        glfw.make_context_current(window)
        self._glfw, self._window = glfw, window

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        height, width = frame.shape[:2]
        # positional arguments: buffer, width, height, GL format, invert, host FBO
        ok = self._sender.sendImage(frame, width, height, self._spout.enums.GL_RGBA, self.invert, 0)
        if ok is False:
            raise OutputError(f"output {self.name!r}: Spout refused frame {index}")
        self._sender.setFrameSync(self.sender_name)

    def _close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.releaseSender()
            if self._spout_gl:
                sender.closeOpenGL()
                self._spout_gl = False
        if self._glfw is not None:
            self._glfw.destroy_window(self._window)
            self._glfw.terminate()
            self._glfw = self._window = None


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    invert: bool = False,
) -> SpoutOutput:
    """Registry factory for the ``spout`` spec."""
    return SpoutOutput(name, invert=invert)
