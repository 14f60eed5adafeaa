"""Where file outputs write: folders made on demand, unwritable places named early."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import OutputError


def writable_dir(directory: str | Path, output: str) -> Path:
    """Create ``directory`` if needed and check it takes files; OutputError names it if not."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"output {output!r}: cannot create the folder {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output {output!r}: the folder {str(path)!r} is not writable")
    return path
