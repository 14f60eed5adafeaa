"""Frame outputs: Syphon, Spout, NDI, shared memory, video files, PNG sequences.

Build one with :func:`create_output` (``"ndi"``, ``"shm"``, ``"file:out.mp4"``, ...), feed
several at once with :class:`OutputGroup`. Backends load only when asked for.
"""

from bridge.outputs.base import *  # noqa: F403 (the public names, listed in base.__all__)
from bridge.outputs.base import __all__ as __all__
