"""PNG sequences written through PyAV, read back with Pillow (an independent decoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.outputs import create_output
from bridge.outputs.images import PngSequenceOutput
from engine.errors import OutputError
from tests.bridge.outputs.patterns import pattern_frame


def test_frames_come_back_exactly_named_by_index(tmp_path: Path) -> None:
    folder = tmp_path / "frames" / "run1"
    out = create_output(f"png:{folder}")
    assert isinstance(out, PngSequenceOutput)
    assert folder.is_dir()
    sent = {index: pattern_frame(index, 40, 24) for index in (0, 1, 7)}  # 2..6 were dropped
    with out:
        out.open(40, 24, 30.0)
        for index, frame in sent.items():
            out.publish(frame, index, index / 30)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000007.png"]
    for index, frame in sent.items():
        with Image.open(folder / f"frame_{index:06d}.png") as image:
            assert image.mode == "RGBA"
            assert image.size == (40, 24)
            np.testing.assert_array_equal(np.asarray(image), frame)  # alpha included


def test_unwritable_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError, match=rf"png:{blocker}/frames.*cannot create the folder"):
        PngSequenceOutput(blocker / "frames")


def test_folder_removed_while_running_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    with PngSequenceOutput(folder) as out:
        out.open(8, 8, 30.0)
        out.publish(pattern_frame(0, 8, 8), 0, 0.0)
        (folder / "frame_000000.png").unlink()
        folder.rmdir()
        with pytest.raises(OutputError, match=r"cannot write '.*gone/frame_000001\.png'"):
            out.publish(pattern_frame(1, 8, 8), 1, 0.0)


def test_compression_level_is_checked_and_used(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"compression_level must be 0\.\.9, got 12"):
        create_output(f"png:{tmp_path}", compression_level=12)
    sizes = {}
    frame = np.tile(np.arange(64, dtype=np.uint8), (64, 4)).reshape(64, 64, 4)
    for level in (0, 9):
        with PngSequenceOutput(tmp_path / str(level), compression_level=level) as out:
            out.open(64, 64, 30.0)
            out.publish(frame, 0, 0.0)
        sizes[level] = (tmp_path / str(level) / "frame_000000.png").stat().st_size
    assert sizes[9] < sizes[0]  # level 0 stores, level 9 compresses
