"""A Spout sender (SpoutGL) for Windows hosts: TouchDesigner, Resolume, OBS.

Spout shares an OpenGL texture, so the sender needs a current OpenGL context. SpoutGL's
``createOpenGL()`` (in every release, from the first) makes one: a hidden window and a WGL
context made current on the calling thread (``spoutGL::CreateOpenGL`` in the Spout SDK), which
``closeOpenGL()`` must release on that same thread. So every SpoutGL call, from making the
sender to closing the context, happens on the thread that opened the output:
:class:`~bridge.outputs.base.OutputGroup` opens, publishes and closes on the output's own
worker thread; a call from any other thread is refused with an :class:`OutputError`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bridge.outputs.publisher import PublisherBase, RGBAImage, import_native
from engine.errors import OutputError

_INSTALL = "pip install SpoutGL (Windows only; wheels for Python 3.10-3.13)"


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
        self._spout = _spoutgl()  # loads the module only: no SpoutGL call before open()
        self._sender: Any = None
        self._thread: int | None = None  # the thread whose OpenGL context the sender uses

    def _open(self, width: int, height: int, fps: float) -> None:
        sender = self._spout.SpoutSender()
        if not sender.createOpenGL():
            raise OutputError(f"output {self.name!r}: SpoutGL could not create an OpenGL context")
        sender.setSenderName(self.sender_name)
        self._sender = sender
        self._thread = threading.get_ident()

    def _on_own_thread(self, action: str) -> None:
        if self._thread != threading.get_ident():
            raise OutputError(
                f"output {self.name!r}: cannot {action} from another thread than the one that "
                "opened it (its OpenGL context is current there only)"
            )

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self._on_own_thread("send")
        height, width = frame.shape[:2]
        # positional arguments: buffer, width, height, GL format, invert, host FBO
        ok = self._sender.sendImage(frame, width, height, self._spout.enums.GL_RGBA, self.invert, 0)
        if ok is False:
            raise OutputError(f"output {self.name!r}: Spout refused frame {index}")
        self._sender.setFrameSync(self.sender_name)

    def _close(self) -> None:
        sender = self._sender
        if sender is None:
            return
        self._on_own_thread("close")
        self._sender = self._thread = None
        try:
            sender.releaseSender()
        finally:
            sender.closeOpenGL()


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    invert: bool = False,
) -> SpoutOutput:
    """Registry factory for the ``spout`` spec."""
    return SpoutOutput(name, invert=invert)
