"""The daemon's loop in-process, pipelined and sequential alike: duration, frame order, the
music of each frame, controls between frames, drop counting, and a show that survives any
failure of a frame (issue 11 item 6).

Frames are observed where they leave: a recording output behind the real ``OutputGroup``
(registered like any output), the loop's ``on_frame`` records, and the OSC feedback over real
UDP on loopback.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage

from bridge.daemon import Daemon, FrameRecord
from bridge.options import RunOptions
from bridge.outputs import base as outputs_base
from bridge.outputs.base import register_output
from bridge.outputs.group import OutputGroup
from bridge.outputs.publisher import PublisherBase, RGBAImage
from engine.audio.analyzer import AudioAnalyzer
from engine.config import DiffusionConfig, InferenceConfig, PipelineConfig
from engine.diffusion import base as diffusion_base
from engine.errors import ConfigError
from osc_schema.schema import ENERGY, FRAME, STATUS_ERROR
from tests.bridge.outputs.syphon_standin import pretend_macos
from tests.engine.audio.signals import tones, write_audio
from tests.engine.diffusion.failing import FAILING_KIND, FailingNull

LOOPS = pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "sequential"])


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("song") / "tone.wav"
    return write_audio(path, tones([330.0], 3.0, 22050), 22050)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One analysis cache for the module: the song is analysed once."""
    return tmp_path_factory.mktemp("cache")


@dataclasses.dataclass
class Published:
    index: int
    time: float
    image: RGBAImage


class Recorder(PublisherBase):
    """An output that keeps what it was given (a copy of each frame), in order."""

    def __init__(self, on_frame: Callable[[Published], None] | None = None) -> None:
        super().__init__("record")
        self.frames: list[Published] = []
        self.on_frame = on_frame

    def _open(self, width: int, height: int, fps: float) -> None:
        pass

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        item = Published(index, time, frame.copy())
        self.frames.append(item)
        if self.on_frame is not None:
            self.on_frame(item)

    def _close(self) -> None:
        pass


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """A ``record`` output kind for this test only; the output it builds."""
    monkeypatch.setattr(outputs_base, "_REGISTRY", dict(outputs_base._REGISTRY))
    made = Recorder()
    register_output("record", lambda target, **_: made)
    return made


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # read after the run: room for every datagram of every frame (several a frame)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        yield sock


def received(sock: socket.socket) -> list[OscMessage]:
    messages = []
    while True:
        try:
            messages.append(OscMessage(sock.recv(65536)))
        except (TimeoutError, BlockingIOError):
            return messages


def make_daemon(
    song: Path,
    cache: Path,
    *,
    model: str = "tiny",
    size: int = 64,
    fps: float = 10,
    overrides: dict[str, Any] | None = None,
    on_frame: Callable[[FrameRecord], None] | None = None,
    **options: object,
) -> Daemon:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": model,
            "diffusion.device": "cpu",
            "inference.width": size,
            "inference.height": size,
            "audio.fps": fps,
            "audio.cache_dir": str(cache),
            **(overrides or {}),
        }
    )
    run = RunOptions.model_validate(
        {
            "audio": song,
            "outputs": ["record"],
            "osc_host": "127.0.0.1",
            "osc_port": 0,
            "oscquery_port": None,
            **options,
        }
    )
    return Daemon(config, run, on_frame=on_frame)


@LOOPS
def test_runs_for_the_duration_and_publishes(
    song: Path, cache: Path, tmp_path: Path, pipelined: bool
) -> None:
    """The real tiny model, frames written as PNG files."""
    stats = make_daemon(
        song, cache, duration=1.5, outputs=[f"png:{tmp_path / 'frames'}"], pipelined=pipelined
    ).run()
    written = sorted((tmp_path / "frames").glob("*.png"))
    assert stats.frames >= 5
    assert len(written) == stats.frames
    # the index follows the clock: rendered plus dropped frames cover the 15 frames of the
    # duration, plus at most half a second (5 frames) of look-ahead
    assert 11 <= stats.frames + stats.dropped <= 21


@LOOPS
def test_frames_in_order_each_with_its_music_and_every_drop_counted(
    song: Path, cache: Path, recorder: Recorder, listener: socket.socket, pipelined: bool
) -> None:
    """A 30 ms render against a 100 fps clock: the loop must drop, and say so."""
    records: list[FrameRecord] = []
    daemon = make_daemon(
        song,
        cache,
        model="null-fixed",
        fps=100,
        overrides={"diffusion.null_render_ms": 30.0},
        duration=1.5,
        pipelined=pipelined,
        feedback=[f"127.0.0.1:{listener.getsockname()[1]}"],
        on_frame=records.append,
    )
    stats = daemon.run()
    frames = recorder.frames
    indices = [f.index for f in frames]
    assert len(frames) == stats.frames >= 10
    assert indices == sorted(set(indices)), "frames out of order or repeated"
    assert [r.index for r in records] == indices
    # each frame carries the audio time of its own index
    assert all(f.time == pytest.approx(f.index / 100) for f in frames)
    # every index the clock passed through is either published or dropped
    assert stats.dropped > 0
    assert stats.errors == 0
    assert stats.frames + stats.dropped == stats.last_index - indices[0] + 1
    # the feedback of each frame is the music at that frame (the file's analysis)
    features = AudioAnalyzer(daemon.config.audio).analyze(song)
    energy: dict[int, float] = {}
    pending_energy = float("nan")
    for message in received(listener):
        if message.address == ENERGY:
            pending_energy = message.params[0]
        elif message.address == FRAME:
            energy[message.params[0]] = pending_energy
    assert set(energy) == set(indices)
    for index, value in energy.items():
        assert value == pytest.approx(features.state_at_frame(index).energy, abs=1e-6)


@LOOPS
def test_at_most_one_frame_is_in_flight(
    song: Path, cache: Path, recorder: Recorder, pipelined: bool
) -> None:
    """Latency grows by one frame at most: when frame n is published, the pipelined loop has
    launched at most the frame after it; the sequential one nothing beyond n."""
    records: list[FrameRecord] = []
    make_daemon(
        song,
        cache,
        model="null-fixed",
        fps=200,
        overrides={"diffusion.null_render_ms": 8.0},
        duration=1.0,
        pipelined=pipelined,
        on_frame=records.append,
    ).run()
    assert len(records) >= 10
    for record, following in itertools.pairwise(records):
        assert record.index <= record.launched <= following.index
        if not pipelined:
            assert record.launched == record.index
    if pipelined:  # the render takes longer than the clock's period: frames overlap
        assert sum(r.launched > r.index for r in records) > len(records) // 2


@LOOPS
def test_controls_change_between_frames(
    song: Path, cache: Path, recorder: Recorder, pipelined: bool
) -> None:
    """A control changed while the loop runs lands whole, at a frame boundary, for good."""
    records: list[FrameRecord] = []
    daemon = make_daemon(
        song,
        cache,
        model="null-fixed",
        fps=100,
        overrides={"diffusion.null_render_ms": 5.0},
        duration=1.0,
        pipelined=pipelined,
        on_frame=records.append,
    )
    changed_after: list[int] = []

    def change(item: Published) -> None:  # on the output's thread, like an OSC handler
        if not changed_after and len(recorder.frames) == 5:
            changed_after.append(item.index)
            daemon.controls.update({"seed": 7, "prompt": "neon city"})

    recorder.on_frame = change
    daemon.run()
    seeds = [r.controls.seed for r in records]
    prompts = [r.controls.prompt for r in records]
    switch = seeds.index(7)
    assert seeds == [42] * switch + [7] * (len(seeds) - switch)
    assert prompts[switch:] == ["neon city"] * (len(seeds) - switch)
    assert all(p != "neon city" for p in prompts[:switch])
    assert records[switch].index > changed_after[0]
    # the new seed moves the latent walk, so the picture changes with it
    images = {f.index: f.image for f in recorder.frames}
    assert not np.array_equal(images[records[switch].index], images[records[switch - 1].index])


@LOOPS
def test_the_show_goes_on_whatever_fails_in_a_frame(
    song: Path,
    cache: Path,
    recorder: Recorder,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    pipelined: bool,
) -> None:
    """A RuntimeError, an out-of-memory error and a NaN frame mid-show (frames 1 and 2 are the
    warm-up's: the failures come later)."""
    failures = {5: "runtime", 6: "runtime", 9: "oom", 12: "nan"}
    models: list[FailingNull] = []

    def build(diffusion: DiffusionConfig, inference: InferenceConfig) -> FailingNull:
        models.append(FailingNull(diffusion, inference, failures, render_ms=4.0))
        return models[-1]

    monkeypatch.setitem(diffusion_base.MODEL_KINDS, FAILING_KIND, build)
    caplog.set_level(logging.INFO, logger="bridge.daemon")
    pumps: list[int] = []
    monkeypatch.setattr(OutputGroup, "pump", lambda self: pumps.append(1))
    daemon = make_daemon(
        song,
        cache,
        model=FAILING_KIND,
        size=128,
        fps=50,
        duration=1.5,
        pipelined=pipelined,
        feedback=[f"127.0.0.1:{listener.getsockname()[1]}"],
    )
    stats = daemon.run()
    model = models[0]
    assert model.failed == sorted(failures)
    # every failure counted, none ended the show, the NaN frame never reached an output
    assert stats.errors == len(failures)
    assert stats.out_of_memory == 1
    assert stats.frames == model.launches - 2 - len(failures)  # 2 warm-up frames
    assert len(recorder.frames) == stats.frames
    assert recorder.frames[-1].index > 40
    # out of memory: half the render size, frames still leave at the configured size
    assert model.inference_config.height == 64
    assert stats.note.startswith("out of memory")
    after = [f.image for f in recorder.frames[-5:]]
    assert all(image.shape == (128, 128, 4) for image in after)
    assert all(np.array_equal(image[0::2, 0::2], image[1::2, 1::2]) for image in after)
    # reported: the log (rate-limited), and over OSC with the frame and the reason
    assert "RuntimeError: mat1 and mat2 shapes" in caplog.text
    assert "out of memory: render size 64x64" in caplog.text
    # the status line (the closing one here: the run is shorter than a status interval)
    assert f"{len(failures)} failed (out of memory: render size 64x64)" in caplog.text
    errors = [m.params for m in received(listener) if m.address == STATUS_ERROR]
    assert any("mat1 and mat2" in reason for _, reason in errors)
    assert any("out of memory: render size 64x64" in reason for _, reason in errors)
    # the main-thread hook of the outputs ran once per frame, failed ones included
    assert len(pumps) == stats.frames + stats.errors


def test_out_of_memory_turns_the_stream_batch_off_first(
    song: Path,
    cache: Path,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = {5: "oom", 8: "oom"}
    models: list[FailingNull] = []

    def build(diffusion: DiffusionConfig, inference: InferenceConfig) -> FailingNull:
        models.append(FailingNull(diffusion, inference, failures))
        return models[-1]

    monkeypatch.setitem(diffusion_base.MODEL_KINDS, FAILING_KIND, build)
    daemon = make_daemon(
        song,
        cache,
        model=FAILING_KIND,
        size=128,
        fps=20,
        overrides={"inference.num_inference_steps": 2, "stream.use_stream_batch": True},
        duration=1.0,
    )
    stats = daemon.run()
    assert stats.out_of_memory == 2
    assert stats.frames > 5
    first, second = (r.getMessage() for r in caplog.records if "out of memory" in r.getMessage())
    assert "out of memory: stream batch off" in first
    assert "out of memory: render size 64x64" in second
    assert models[0].inference_config.height == 64
    assert stats.note == "out of memory: render size 64x64"


@LOOPS
def test_stop_event_ends_the_loop_quickly(song: Path, cache: Path, pipelined: bool) -> None:
    daemon = make_daemon(song, cache, model="null", loop=True, outputs=["shm"], pipelined=pipelined)

    def stop_once_frames_flow() -> None:
        # after the first frame, not after a fixed delay: set-up (model load) varies with load
        deadline = time.monotonic() + 120
        while daemon.stats.frames < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.stop_event.set()

    stopper = threading.Thread(target=stop_once_frames_flow, daemon=True)
    stopper.start()
    stats = daemon.run()  # would loop forever without the stop
    stopper.join()
    assert stats.frames >= 1


def test_needs_a_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--audio FILE or --live"):
        Daemon(PipelineConfig(), RunOptions())


def test_the_live_status_line_says_what_failed_and_how_the_engine_stepped_down(
    song: Path, cache: Path
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    daemon = make_daemon(song, cache, model="null")
    daemon._status_stream = terminal
    daemon.stats.errors = 3
    daemon.stats.note = "out of memory: stream batch off"
    daemon._print_status(4, 120.0)
    assert "errors 3 (out of memory: stream batch off)" in terminal.getvalue()


@LOOPS
def test_outputs_are_pumped_from_the_main_thread_between_frames(
    song: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, pipelined: bool
) -> None:
    """A Syphon output (the stand-in of tests/bridge/outputs/syphon_standin.py: Syphon cannot run
    here) hears discovery requests only if the daemon's main thread pumps its run loop."""
    calls = pretend_macos(monkeypatch)
    daemon = make_daemon(song, cache, duration=1.0, outputs=["syphon"], pipelined=pipelined)
    stats = daemon.run()
    pumps = calls.of("update_run_loop")
    assert stats.frames >= 3
    assert len(pumps) >= stats.frames  # at least once per published frame
    assert {thread for _, _, thread in pumps} == {threading.main_thread().ident}
    publishing = {c[-1] for c in calls.of("publish_frame_texture")}
    assert threading.main_thread().ident not in publishing
