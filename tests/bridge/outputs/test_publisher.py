"""The frame rule and the lifecycle every output shares."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from bridge.outputs import FramePublisher, PublisherBase, validate_frame
from bridge.outputs.publisher import RGBAImage
from bridge.outputs.shm import ShmOutput
from engine.errors import OutputError


class Recorder(PublisherBase):
    """A minimal real output: keeps what it was given."""

    def __init__(self) -> None:
        super().__init__("recorder")
        self.calls: list[tuple[str, object]] = []

    def _open(self, width: int, height: int, fps: float) -> None:
        self.calls.append(("open", (width, height, fps)))

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self.calls.append(("publish", (frame, index, time)))

    def _close(self) -> None:
        self.calls.append(("close", None))


def test_valid_uint8_frame_passes_without_a_copy() -> None:
    frame = np.zeros((4, 6, 4), np.uint8)
    assert validate_frame(frame) is frame


def test_non_contiguous_frame_is_copied_once() -> None:
    big = np.arange(4 * 12 * 4, dtype=np.uint8).reshape(4, 12, 4)
    view = big[:, ::2]
    out = validate_frame(view)
    assert out.flags.c_contiguous
    assert not np.shares_memory(out, big)
    np.testing.assert_array_equal(out, view)
    assert validate_frame(out) is out


@pytest.mark.parametrize("shape", [(4, 6, 3), (4, 6), (4, 6, 4, 1), (0, 6, 4), (4, 0, 4), (24,)])
def test_wrong_shape_is_refused_with_the_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(OutputError, match=re.escape(str(shape))):
        validate_frame(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int8, np.bool_, np.complex64])
def test_wrong_dtype_is_refused_with_the_dtype(dtype: type) -> None:
    with pytest.raises(OutputError, match=np.dtype(dtype).name):
        validate_frame(np.zeros((2, 2, 4), dtype))


def test_not_an_array_is_refused() -> None:
    with pytest.raises(OutputError, match="list"):
        validate_frame([[[0, 0, 0, 0]]])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_frame_in_unit_range_is_rounded_to_uint8(dtype: type[np.floating[Any]]) -> None:
    values = np.array([0.0, 1 / 255, 0.5, 1.0], dtype=dtype)
    frame = np.broadcast_to(values, (3, 2, 4)).astype(dtype)
    out = validate_frame(frame)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert out.shape == (3, 2, 4)
    np.testing.assert_array_equal(out[0, 0], [0, 1, 128, 255])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_frame_with_nan_or_inf_is_refused(bad: float) -> None:
    frame = np.full((2, 3, 4), 0.5, np.float32)
    frame[1, 2, 0] = bad
    with pytest.raises(OutputError, match=r"1 NaN or infinite"):
        validate_frame(frame)


@pytest.mark.parametrize("bad", [-0.01, 1.01, 255.0])
def test_float_frame_out_of_range_is_refused(bad: float) -> None:
    frame = np.full((2, 2, 4), 0.5, np.float32)
    frame[0, 0, 0] = bad
    with pytest.raises(OutputError, match=r"\[0, 1\]"):
        validate_frame(frame)


def test_lifecycle_checks() -> None:
    out = Recorder()
    frame = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(OutputError, match="'recorder' is not open"):
        out.publish(frame, 0, 0.0)
    for width, height, fps in [(0, 2, 30.0), (3, -1, 30.0), (3, 2, 0.0), (3, 2, float("nan"))]:
        with pytest.raises(OutputError, match="recorder"):
            out.open(width, height, fps)
    with out:
        out.open(3, 2, 30.0)
        assert (out.width, out.height, out.fps, out.is_open) == (3, 2, 30.0, True)
        with pytest.raises(OutputError, match="already open"):
            out.open(3, 2, 30.0)
        with pytest.raises(OutputError, match="opened for 3x2, got a 2x3 frame"):
            out.publish(np.zeros((3, 2, 4), np.uint8), 0, 0.0)
        with pytest.raises(OutputError, match="index must be >= 0"):
            out.publish(frame, -1, 0.0)
        out.publish(np.full((2, 3, 4), 1.0, np.float32), 7, 0.25)
    assert not out.is_open
    out.close()  # idempotent
    kinds = [kind for kind, _ in out.calls]
    assert kinds == ["open", "publish", "close"]
    publish = out.calls[1][1]
    assert isinstance(publish, tuple)
    published, index, time = publish
    assert (index, time) == (7, 0.25)
    assert published.dtype == np.uint8
    assert published.max() == 255


def test_outputs_satisfy_the_protocol() -> None:
    assert isinstance(Recorder(), FramePublisher)
    assert isinstance(ShmOutput("protocol-check"), FramePublisher)
