"""Several outputs at once: a slow or failing output never holds up the render loop."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import numpy as np
import pytest

from bridge.outputs import OutputGroup, PublisherBase
from bridge.outputs.publisher import RGBAImage
from bridge.outputs.shm import ShmFrameReader, ShmOutput
from engine.errors import OutputError

FRAME = np.zeros((4, 4, 4), np.uint8)


class Recorder(PublisherBase):
    """Keeps every frame and the thread each call ran on."""

    def __init__(self, name: str = "recorder") -> None:
        super().__init__(name)
        self.frames: list[tuple[RGBAImage, int]] = []
        self.threads: dict[str, int] = {}
        self.closed = False

    def _open(self, width: int, height: int, fps: float) -> None:
        self.threads["open"] = threading.get_ident()

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self.threads["publish"] = threading.get_ident()
        self.frames.append((frame, index))

    def _close(self) -> None:
        self.threads["close"] = threading.get_ident()
        self.closed = True


class Stuck(Recorder):
    """Blocks inside publish until released, like an output whose consumer hangs."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.entered = threading.Event()
        self.release = threading.Event()

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        self.entered.set()
        assert self.release.wait(30), "never released"
        super()._publish(frame, index, time)


class Failing(Recorder):
    def __init__(self) -> None:
        super().__init__("failing")

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        raise RuntimeError(f"device gone at frame {index}")


class FailsToOpen(Recorder):
    def _open(self, width: int, height: int, fps: float) -> None:
        raise OutputError("output 'broken': cannot open")


def test_slow_output_drops_oldest_and_publish_never_waits() -> None:
    """50 publishes complete while the output is stuck in its first frame (no timing used)."""
    stuck, fine = Stuck(), Recorder()
    group = OutputGroup([stuck, fine], queue_size=2)
    group.open(4, 4, 30.0)
    group.publish(FRAME, 0, 0.0)
    assert stuck.entered.wait(10)
    for index in range(1, 50):
        group.publish(FRAME, index, index / 30)
    assert group.flush(0.05) is False  # the stuck output still holds work
    stats = group.stats()
    assert stats["stuck"].dropped == 47  # 49 queued behind the stuck frame, 2 kept
    stuck.release.set()
    assert group.flush(10)
    group.close()
    assert [i for _, i in stuck.frames] == [0, 48, 49]  # the oldest went first
    fine_indices = [i for _, i in fine.frames]
    assert fine_indices == sorted(fine_indices)
    assert fine_indices[-1] == 49
    assert len(fine_indices) + group.stats()["recorder"].dropped == 50
    final = group.stats()["stuck"]
    assert (final.published, final.dropped, final.errors, final.disabled) == (3, 47, 0, False)


def test_failing_output_is_disabled_and_the_others_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, fine = Failing(), Recorder()
    group = OutputGroup([failing, fine], queue_size=64, max_failures=3, log_interval_s=3600)
    caplog.set_level(logging.WARNING, logger="bridge.outputs.group")
    with group:
        group.open(4, 4, 30.0)
        for index in range(10):
            group.publish(FRAME, index, index / 30)
            group.flush(10)
        deadline = time.monotonic() + 10
        while not failing.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        # closed when disabled, not at the end
        assert failing.closed
        assert not fine.closed
    stats = group.stats()
    assert stats["failing"].errors == 3
    assert stats["failing"].disabled
    assert stats["failing"].last_error == "RuntimeError: device gone at frame 2"
    assert stats["recorder"].published == 10
    assert not stats["recorder"].disabled
    assert [i for _, i in fine.frames] == list(range(10))
    assert failing.closed
    assert fine.closed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 1
    assert "failing" in warnings[0].getMessage()  # rate-limited
    assert len(errors) == 1
    assert "disabled after 3 failures" in errors[0].getMessage()


def test_each_output_lives_on_one_thread_of_its_own() -> None:
    a, b = Recorder("a"), Recorder("b")
    with OutputGroup([a, b]) as group:
        group.open(4, 4, 30.0)
        group.publish(FRAME, 0, 0.0)
        group.flush(10)
    for out in (a, b):
        assert len(set(out.threads.values())) == 1
        assert out.threads["open"] != threading.get_ident()
    assert a.threads["open"] != b.threads["open"]


def test_float_frame_is_converted_once_for_all_outputs() -> None:
    a, b = Recorder("a"), Recorder("b")
    with OutputGroup([a, b]) as group:
        group.open(4, 4, 30.0)
        group.publish(np.full((4, 4, 4), 0.5, np.float32), 0, 0.0)
        group.flush(10)
    assert a.frames[0][0] is b.frames[0][0]
    assert a.frames[0][0].dtype == np.uint8
    assert a.frames[0][0][0, 0, 0] == 128


def test_bad_frame_is_refused_on_the_caller() -> None:
    with OutputGroup([Recorder()]) as group:
        with pytest.raises(OutputError, match="not open"):
            group.publish(FRAME, 0, 0.0)
        group.open(4, 4, 30.0)
        with pytest.raises(OutputError, match="NaN"):
            group.publish(np.full((4, 4, 4), np.nan, np.float32), 0, 0.0)


def test_open_failure_closes_the_others_and_raises() -> None:
    fine, broken = Recorder(), FailsToOpen("broken")
    group = OutputGroup([fine, broken])
    with pytest.raises(OutputError, match="'broken': cannot open"):
        group.open(4, 4, 30.0)
    assert fine.closed


def test_close_is_bounded_when_an_output_hangs(caplog: pytest.LogCaptureFixture) -> None:
    stuck = Stuck()
    group = OutputGroup([stuck])
    group.open(4, 4, 30.0)
    group.publish(FRAME, 0, 0.0)
    assert stuck.entered.wait(10)
    group.close(timeout=0.2)  # returns although the output never comes back
    assert any("did not close" in r.getMessage() for r in caplog.records)
    stuck.release.set()


def test_close_drains_queued_frames() -> None:
    out = Recorder()
    group = OutputGroup([out], queue_size=8)
    group.open(4, 4, 30.0)
    for index in range(5):
        group.publish(FRAME, index, 0.0)
    group.close()
    assert [i for _, i in out.frames] == [0, 1, 2, 3, 4]
    assert out.closed


def test_same_names_get_numbered_and_bad_settings_are_refused() -> None:
    with OutputGroup([Recorder("x"), Recorder("x")]) as group:
        group.open(4, 4, 30.0)
        assert set(group.stats()) == {"x", "x#2"}
    with pytest.raises(OutputError, match="at least one output"):
        OutputGroup([])
    with pytest.raises(OutputError, match="queue_size"):
        OutputGroup([Recorder()], queue_size=0)


def test_real_shm_output_keeps_flowing_beside_a_failing_one() -> None:
    name = f"g{uuid.uuid4().hex[:8]}"
    with OutputGroup([Failing(), ShmOutput(name)], max_failures=2) as group:
        group.open(4, 4, 30.0)
        with ShmFrameReader(name) as reader:
            for index in range(6):
                group.publish(np.full((4, 4, 4), index, np.uint8), index, index / 30)
                assert group.flush(10)
                frame = reader.read()
                assert frame is not None
                assert frame.index == index
                assert int(frame.image[0, 0, 0]) == index
        assert group.stats()["failing"].disabled


class Pumped(Recorder):
    """Counts its pumps and the threads they ran on; ``broken`` makes every pump raise."""

    def __init__(self, name: str, *, broken: bool = False) -> None:
        super().__init__(name)
        self.broken = broken
        self.pumps: list[int] = []

    def pump(self) -> None:
        self.pumps.append(threading.get_ident())
        if self.broken:
            raise RuntimeError("pump broke")


def test_pump_runs_each_open_output_on_the_calling_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, fine, plain = Pumped("broken", broken=True), Pumped("fine"), Recorder("plain")
    group = OutputGroup([broken, fine, plain], log_interval_s=3600)
    group.pump()  # not open yet: nothing to pump
    with group:
        group.open(4, 4, 30.0)
        with caplog.at_level(logging.WARNING, logger="bridge.outputs.group"):
            for _ in range(3):
                group.pump()
    group.pump()  # closed: nothing either
    me = threading.get_ident()
    # one failing does not stop others
    assert broken.pumps == [me] * 3
    assert fine.pumps == [me] * 3
    warnings = [r.getMessage() for r in caplog.records if "pump failed" in r.getMessage()]
    assert warnings == ["output broken: pump failed: RuntimeError: pump broke"]  # rate-limited
    assert {broken.threads["open"], fine.threads["open"]}.isdisjoint({me})


def test_frames_reach_outputs_without_a_copy() -> None:
    """What the render loop publishes (a slot of the host ring) is what each output reads:
    the group and the frame rule pass a C-contiguous uint8 frame through as the same array."""
    recorder = Recorder()
    group = OutputGroup([recorder])
    group.open(4, 4, 30.0)
    frame = np.zeros((4, 4, 4), np.uint8)
    group.publish(frame, 0, 0.0)
    assert group.flush(5.0)
    group.close()
    assert recorder.frames[0][0] is frame


def test_shared_memory_is_written_straight_from_the_published_frame() -> None:
    name = f"t{uuid.uuid4().hex[:10]}"
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    with ShmOutput(name) as out, ShmFrameReader(name) as reader:
        out.open(8, 8, 30.0)
        copies: list[np.ndarray] = []
        original = out._copy_pixels

        def copy_pixels(slot: np.ndarray, frame: RGBAImage) -> None:
            copies.append(frame)
            original(slot, frame)

        out._copy_pixels = copy_pixels  # type: ignore[method-assign]
        out.publish(frame, 0, 0.0)
        assert copies[0] is frame  # one copy: from the frame into the slot
        got = reader.read()
        assert got is not None
        np.testing.assert_array_equal(got.image, frame)


class StuckRecording(Stuck):
    """A stuck output that asks for a recording's deep queue (as mp4 and PNG outputs do)."""

    queue_frames = 32


@pytest.mark.parametrize(("output", "kept"), [(Stuck, 3), (StuckRecording, 20)])
def test_a_recording_keeps_every_frame_through_a_slow_moment(
    output: type[Stuck], kept: int
) -> None:
    """20 frames while the output is stuck in its first: a live output keeps its newest two (and
    the one in hand), a recording all of them (no timing used)."""
    stuck = output()
    group = OutputGroup([stuck])
    group.open(4, 4, 30.0)
    frame = np.zeros((4, 4, 4), np.uint8)
    group.publish(frame, 0, 0.0)
    assert stuck.entered.wait(10)
    for index in range(1, 20):
        group.publish(frame, index, index / 30)
    stuck.release.set()
    assert group.flush(10.0)
    group.close()
    assert len(stuck.frames) == kept
    assert group.stats()[stuck.name].dropped == 20 - kept


def test_mp4_and_png_outputs_ask_for_the_recording_queue() -> None:
    from bridge.outputs.images import PngSequenceOutput
    from bridge.outputs.publisher import RECORDING_QUEUE_FRAMES
    from bridge.outputs.video import VideoFileOutput

    assert VideoFileOutput.queue_frames == RECORDING_QUEUE_FRAMES
    assert PngSequenceOutput.queue_frames == RECORDING_QUEUE_FRAMES
    assert OutputGroup([Recorder()]).queue_size < RECORDING_QUEUE_FRAMES
