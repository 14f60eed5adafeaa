"""The daemon's loop in-process: duration, pacing counters, a failing frame does not end the show."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bridge.daemon import Daemon
from bridge.options import RunOptions
from engine.config import PipelineConfig
from engine.errors import ConfigError, RenderError
from engine.render import Conductor
from tests.bridge.outputs.syphon_standin import pretend_macos
from tests.engine.audio.signals import tones, write_audio


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("song") / "tone.wav"
    return write_audio(path, tones([330.0], 3.0, 22050), 22050)


def make_daemon(song: Path, tmp_path: Path, **options: object) -> Daemon:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": "tiny",
            "inference.width": 64,
            "inference.height": 64,
            "audio.fps": 10,
            "audio.cache_dir": str(tmp_path / "cache"),
        }
    )
    run = RunOptions.model_validate(
        {
            "audio": song,
            "outputs": [f"png:{tmp_path / 'frames'}"],
            "osc_host": "127.0.0.1",
            "osc_port": 0,
            "oscquery_port": None,
            **options,
        }
    )
    return Daemon(config, run)


def test_runs_for_the_duration_and_publishes(song: Path, tmp_path: Path) -> None:
    stats = make_daemon(song, tmp_path, duration=1.5).run()
    written = sorted((tmp_path / "frames").glob("*.png"))
    assert stats.frames >= 5 and len(written) == stats.frames
    # the index follows the clock: rendered plus dropped frames cover the 15 frames of the
    # duration, plus at most half a second (5 frames) of look-ahead
    assert 11 <= stats.frames + stats.dropped <= 21


def test_a_failing_frame_is_reported_and_the_show_goes_on(
    song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the conductor is made to fail on frames 3 to 5 (a stand-in for a model
    error mid-show); the loop must log it, count it and keep rendering."""
    real_render = Conductor.render

    def flaky(self: Conductor, music, index=None):  # type: ignore[no-untyped-def]
        if index is not None and 3 <= index <= 5:
            raise RenderError(f"injected failure at frame {index}")
        return real_render(self, music, index)

    monkeypatch.setattr(Conductor, "render", flaky)
    stats = make_daemon(song, tmp_path, duration=1.5).run()
    assert stats.errors >= 1
    assert stats.last_index > 5 and stats.frames >= 5
    assert "injected failure" in caplog.text


def test_stop_event_ends_the_loop_quickly(song: Path, tmp_path: Path) -> None:
    daemon = make_daemon(song, tmp_path, loop=True)

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


def test_outputs_are_pumped_from_the_main_thread_between_frames(
    song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Syphon output (the stand-in of tests/bridge/outputs/syphon_standin.py: Syphon cannot run
    here) hears discovery requests only if the daemon's main thread pumps its run loop."""
    calls = pretend_macos(monkeypatch)
    daemon = make_daemon(song, tmp_path, duration=1.0, outputs=["syphon"])
    stats = daemon.run()
    pumps = calls.of("update_run_loop")
    assert stats.frames >= 3
    assert len(pumps) >= stats.frames  # at least once per published frame
    assert {thread for _, _, thread in pumps} == {threading.main_thread().ident}
    publishing = {c[-1] for c in calls.of("publish_frame_texture")}
    assert threading.main_thread().ident not in publishing
