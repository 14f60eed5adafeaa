"""NDI on loopback: a real cyndilib receiver finds the sender by name and gets its frames.

NDI discovery is pointed at 127.0.0.1 by the ``ndi_loopback`` fixture (conftest.py). Waits
are bounded: every loop gives up after a few seconds.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cyndilib
import numpy as np
import pytest
from cyndilib.video_frame import VideoFrameSync

from bridge.outputs.ndi import NdiOutput, rgba_to_uyvy
from engine.errors import OutputError
from tests.bridge.outputs.patterns import psnr, smooth_frame

WAIT_S = 8.0


class Viewer:
    """An NDI receiver as TouchDesigner's NDI In TOP would be: find by name, pull frames."""

    def __init__(self, source_name: str) -> None:
        self.finder = cyndilib.Finder()
        self.finder.open()
        source = None
        end = time.monotonic() + WAIT_S
        while source is None and time.monotonic() < end:
            if source_name in self.finder.get_source_names():
                source = self.finder.get_source(source_name)
            else:
                self.finder.wait_for_sources(0.2)
        assert source is not None, f"{source_name!r} not in {self.finder.get_source_names()}"
        self.receiver = cyndilib.Receiver(
            color_format=cyndilib.RecvColorFormat.RGBX_RGBA,
            bandwidth=cyndilib.RecvBandwidth.highest,
        )
        self.video = VideoFrameSync()
        self.receiver.frame_sync.set_video_frame(self.video)
        self.receiver.set_source(source)

    def grab(self, out: NdiOutput, frame: np.ndarray) -> np.ndarray:
        """Publish ``frame`` until a picture of its size comes back (bounded)."""
        height, width = frame.shape[:2]
        end, index = time.monotonic() + WAIT_S, 0
        while time.monotonic() < end:
            out.publish(frame, index, index / 30)
            index += 1
            time.sleep(0.02)
            self.receiver.frame_sync.capture_video()
            if (self.video.xres, self.video.yres) == (width, height):
                data: np.ndarray = self.video.get_array()
                if data.size == width * height * 4 and index > 3:
                    return data.reshape(height, width, 4)
        raise AssertionError(f"no {width}x{height} frame within {WAIT_S} s")

    def close(self) -> None:
        self.receiver.disconnect()
        self.finder.close()


@pytest.fixture
def viewer_for() -> Iterator[Any]:
    viewers: list[Viewer] = []

    def make(out: NdiOutput) -> Viewer:
        assert out.source_name is not None
        viewers.append(Viewer(out.source_name))
        return viewers[-1]

    yield make
    for viewer in viewers:
        viewer.close()


@pytest.mark.parametrize("pixel_format", ["rgba", "bgra", "uyvy"])
def test_receiver_finds_sender_and_gets_clean_frames(pixel_format: str, viewer_for: Any) -> None:
    name = f"hamba-{pixel_format}-{uuid.uuid4().hex[:6]}"
    with NdiOutput(name, pixel_format=pixel_format) as out:
        out.open(320, 240, 30.0)
        # the name TouchDesigner and Resolume list: "HOST (name)"
        assert out.source_name is not None
        assert out.source_name.endswith(f" ({name})")
        assert out.source_name.split(" (")[0].lower() in socket.gethostname().lower()
        viewer = viewer_for(out)
        sent = smooth_frame(320, 240)
        got = viewer.grab(out, sent)
        assert got.shape == (240, 320, 4)
        assert psnr(got[..., :3], sent[..., :3]) > 30.0
        assert out.connections >= 1


def test_sender_outlives_its_receivers(viewer_for: Any) -> None:
    name = f"hamba-leave-{uuid.uuid4().hex[:6]}"
    sent = smooth_frame(160, 120)
    with NdiOutput(name) as out:
        out.open(160, 120, 30.0)
        first = viewer_for(out)
        first.grab(out, sent)
        first.close()
        for index in range(30):  # nobody watching: publishing carries on without error
            out.publish(sent, index, index / 30)
        second = viewer_for(out)
        assert psnr(second.grab(out, sent)[..., :3], sent[..., :3]) > 30.0


def test_uyvy_packing_uses_bt709_limited_range() -> None:
    colours = np.array([[[255, 255, 255, 255], [0, 0, 0, 255]], [[255, 0, 0, 255], [255, 0, 0, 9]]])
    packed = rgba_to_uyvy(colours.astype(np.uint8))
    assert packed.shape == (2, 2, 2)
    # white, black: U Y0 V Y1 with neutral chroma averaged over the pair
    assert packed[0].reshape(-1).tolist() == [128, 235, 128, 16]
    # BT.709 red: Y 63, Cb 102, Cr 240; alpha is dropped
    assert packed[1].reshape(-1).tolist() == [102, 63, 240, 63]


def test_uyvy_needs_an_even_width_and_formats_are_checked() -> None:
    with pytest.raises(OutputError, match="even width, got 321"):
        NdiOutput("odd", pixel_format="uyvy").open(321, 240, 30.0)
    with pytest.raises(OutputError, match=r"ndi:x.*pixel_format 'rgb'"):
        NdiOutput("x", pixel_format="rgb")


def test_ndi_is_given_a_view_of_the_frame_not_a_copy() -> None:
    """RGBA frames go to cyndilib as a 1-D view of the published array (cyndilib copies it
    once into its own buffer, without the GIL): a spy in front of the real sender looks."""
    given: list[np.ndarray] = []
    with NdiOutput("view-test") as out:
        out.open(8, 8, 30.0)
        real = out._sender

        class Spy:
            def write_video_async(self, data: np.ndarray) -> object:
                given.append(data)
                return real.write_video_async(data)

            def close(self) -> None:
                real.close()

        out._sender = Spy()
        frame = np.zeros((8, 8, 4), np.uint8)
        out.publish(frame, 0, 0.0)
    assert given[0].ndim == 1
    assert np.shares_memory(given[0], frame)
