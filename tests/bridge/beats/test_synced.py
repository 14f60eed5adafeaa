"""SyncedMusic: a real file's music, its beat from the source the beat_source control picks."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from bridge.beats.base import BeatReading
from bridge.beats.synced import SyncedMusic
from bridge.midi.clock import PPQN, MidiClock
from bridge.music import FileMusic
from engine.audio.types import MusicState
from engine.config import AudioConfig
from engine.controls import ControlStore
from osc_schema.schema import BEAT_SOURCE_STATUS
from tests.engine.audio.signals import click_track, tones, write_audio

FPS = 20.0
OFFSET = 0.25


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> FileMusic:
    sr = 22050
    clicks, _ = click_track(120, 10.0, sr, offset=OFFSET)
    path = write_audio(
        tmp_path_factory.mktemp("synced") / "click.wav",
        clicks + tones([261.63], 10.0, sr, amplitude=0.05),
        sr,
    )
    return FileMusic(path, AudioConfig(cache=False, fps=FPS))


class Ticking:
    """A MIDI clock fed in real time by the test as frames go by."""

    def __init__(self, bpm: float, auto: bool = False) -> None:
        self.clock = MidiClock(quantum=4, auto=auto)
        self.period = 60.0 / bpm / PPQN
        # started a moment ago: a few clocks give a tempo at once
        self.next = time.monotonic() - 0.2
        self.clock.handle("start", self.next - 0.001)
        self.catch_up(time.monotonic())

    def catch_up(self, until: float) -> None:
        while self.next <= until:
            self.clock.handle("clock", self.next)
            self.next += self.period


def run(music: SyncedMusic, seconds: float, ticking: Ticking | None = None) -> list[MusicState]:
    """Frames as the daemon asks for them: index from the music clock, one per period."""
    states: list[MusicState] = []
    music.start()
    try:
        last = -1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ticking is not None:
                ticking.catch_up(time.monotonic())
            index = int(music.clock() * FPS)
            if index > last:
                states.append(music.state_at(index, index / FPS))
                last = index
            time.sleep(0.002)
    finally:
        music.stop()
    return states


def test_audio_passes_the_music_through(song: FileMusic) -> None:
    store = ControlStore()
    synced = SyncedMusic(song, store, FPS)
    states = run(synced, 1.2)
    assert synced.active == "audio"
    assert all(s.tempo == pytest.approx(song.features.tempo) for s in states)
    assert all(s.bar_phase is None for s in states)
    assert synced.feedback_values() == {BEAT_SOURCE_STATUS: ("audio",)}


def test_the_midi_clock_drives_beat_and_bar_the_music_the_rest(song: FileMusic) -> None:
    store = ControlStore()
    ticking = Ticking(150.0)
    synced = SyncedMusic(song, store, FPS, {"midi": ticking.clock})
    store.set("beat_source", "midi", source="/hamba/beat_source")
    beats: list[float] = []
    synced.add_beat_listener(lambda wall, _down: beats.append(wall))
    states = run(synced, 2.0, ticking)
    assert synced.active == "midi"
    assert states[-1].tempo == pytest.approx(150.0, abs=0.5)
    assert states[-1].bar_phase is not None
    # 150 BPM: a beat each 0.4 s, in 2 s about 4-5 beat frames (audio would give 4 at 120)
    flagged = [s for s in states if s.beat]
    assert 4 <= len(flagged) <= 5
    assert len(beats) == len(flagged)
    assert any(s.downbeat for s in flagged)
    # energy and chroma still come from the file
    expected = song.state_at(states[10].frame, states[10].time)
    assert states[10].energy == expected.energy
    np.testing.assert_array_equal(states[10].chroma, expected.chroma)


def test_the_live_switch_lands_between_frames(song: FileMusic) -> None:
    store = ControlStore()
    ticking = Ticking(150.0)
    synced = SyncedMusic(song, store, FPS, {"midi": ticking.clock})
    synced.start()
    try:
        ticking.catch_up(time.monotonic())
        store.set("beat_source", "midi")
        assert synced.state_at(1, 1 / FPS).tempo == pytest.approx(150.0, abs=1.0)
        store.set("beat_source", "audio")
        assert synced.state_at(2, 2 / FPS).tempo == pytest.approx(song.features.tempo)
        assert synced.feedback_values() == {BEAT_SOURCE_STATUS: ("audio",)}
    finally:
        synced.stop()


def test_auto_precedence_and_an_unavailable_request(
    song: FileMusic, caplog: pytest.LogCaptureFixture
) -> None:
    store = ControlStore()
    ticking = Ticking(150.0, auto=True)
    synced = SyncedMusic(song, store, FPS, {"midi": ticking.clock})
    assert synced.active_source() == "midi"  # [midi] clock on and the clock runs
    store.set("beat_source", "audio")  # an explicit choice wins over auto's
    assert synced.active_source() == "audio"
    store.set("beat_source", "auto")
    ticking.clock.handle("stop", time.monotonic())
    assert synced.active_source() == "audio"  # a stopped clock does not drive
    with caplog.at_level(logging.WARNING, logger="bridge.beats.synced"):
        store.set("beat_source", "link")  # no Link in this run
        assert synced.active_source() == "audio"
        assert synced.active_source() == "audio"
    assert caplog.text.count("beat source link asked for") == 1  # said once, not per frame


def test_a_failing_beat_source_costs_the_beat_not_the_show(
    song: FileMusic, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "midi"

        def reading(self, wall: float) -> BeatReading | None:
            raise RuntimeError("clock on fire")

        def wants_auto(self) -> bool:
            return True

    synced = SyncedMusic(song, ControlStore(), FPS, {"midi": Broken()})
    synced.start()
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.beats.synced"):
            state = synced.state_at(3, 3 / FPS)
    finally:
        synced.stop()
    assert state.energy == song.state_at(3, 3 / FPS).energy
    assert "clock on fire" in caplog.text


def test_the_file_beat_grid_sits_on_the_clicks(song: FileMusic) -> None:
    synced = SyncedMusic(song, ControlStore(), FPS)
    synced.start()
    try:
        time.sleep(0.3)
        origin = time.monotonic() - synced.clock()
        grid = synced.beat_grid()
    finally:
        synced.stop()
    assert grid is not None
    assert grid.tempo == pytest.approx(120.0, abs=0.5)
    # where the grid puts a beat, in music time, against the clicks (the tracker lags a little)
    music_time = grid.anchor - origin
    error = (music_time - OFFSET + 0.25) % 0.5 - 0.25
    assert -0.005 <= error <= 0.03, error


def test_warm_up_frames_before_start_are_the_musics(song: FileMusic) -> None:
    ticking = Ticking(150.0)
    store = ControlStore()
    store.set("beat_source", "midi")
    synced = SyncedMusic(song, store, FPS, {"midi": ticking.clock})
    ticking.catch_up(time.monotonic())
    assert synced.state_at(0, 0.0).tempo == pytest.approx(song.features.tempo)
