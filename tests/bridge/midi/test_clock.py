"""MIDI clock in: clock messages through MidiControl.on_message (the rtmidi callback's entry
point), read as a beat source. Arrival times are given (``at``) where a test needs a known
jitter, and left to the real clock in the real-time test."""

from __future__ import annotations

import threading
import time

import mido
import numpy as np
import pytest

from bridge.beats.base import BeatCounter
from bridge.midi.clock import MAX_EXTRAPOLATION, PPQN, MidiClock
from bridge.midi.control import MidiControl
from bridge.midi.mapping import midi_map_from_data
from engine.controls import ControlStore

CLOCK = mido.Message("clock")


def surface(auto: bool = False) -> tuple[MidiControl, MidiClock]:
    clock = MidiClock(quantum=4, auto=auto)
    mapping = midi_map_from_data({"input": "test", "clock": auto}, source="test")
    return MidiControl(ControlStore(), mapping, clock=clock), clock


def feed(control: MidiControl, bpm: float, beats: float, start: float, jitter: float) -> float:
    """Clocks at ``bpm`` from ``start`` with Gaussian arrival jitter; the time of the last."""
    rng = np.random.default_rng(3)
    period = 60.0 / bpm / PPQN
    at = start
    for k in range(round(beats * PPQN)):
        at = start + k * period
        control.on_message(CLOCK, at=at + float(rng.normal(0.0, jitter)))
    return at


@pytest.mark.parametrize("jitter", [0.0, 0.001, 0.002])
def test_24_ppqn_at_125_bpm_reads_125(jitter: float) -> None:
    control, clock = surface()
    feed(control, 125.0, 8, 100.0, jitter)
    assert clock.tempo == pytest.approx(125.0, abs=0.5)


@pytest.mark.parametrize("late", [3, 6])
def test_a_stalled_receiver_delivering_clocks_at_once_does_not_swing_the_tempo(late: int) -> None:
    control, clock = surface()
    rng = np.random.default_rng(5)
    period = 60.0 / 125.0 / PPQN
    for k in range(8 * PPQN):
        at = 100.0 + k * period
        if 170 <= k < 170 + late:  # the callback thread was held up: these arrive together
            at = 100.0 + (170 + late) * period
        control.on_message(CLOCK, at=at + float(rng.normal(0.0, 0.001)))
    assert clock.tempo == pytest.approx(125.0, abs=0.5)


def test_real_time_clock_reads_its_tempo() -> None:
    """Two seconds of clock sent in real time from a thread, stamped on arrival."""
    control, clock = surface()
    period = 60.0 / 125.0 / PPQN

    def sender() -> None:
        start = time.monotonic()
        for k in range(round(2.0 / period)):
            time.sleep(max(0.0, start + k * period - time.monotonic()))
            control.on_message(CLOCK)

    thread = threading.Thread(target=sender)
    thread.start()
    thread.join()
    assert clock.tempo == pytest.approx(125.0, abs=0.5)
    assert clock.running(time.monotonic())


def test_start_makes_the_first_clock_a_downbeat() -> None:
    control, clock = surface()
    tick = 60.0 / 120.0 / PPQN
    control.on_message(mido.Message("start"), at=9.99)
    control.on_message(CLOCK, at=10.0)
    assert clock.reading(10.0) is None  # no tempo from one clock
    for k in range(1, 3):
        control.on_message(CLOCK, at=10.0 + k * tick)
    at_first = clock.reading(10.0)
    assert at_first is not None
    assert at_first.position == pytest.approx(0.0, abs=1e-6)
    for k in range(3, 6 * PPQN):  # 6 beats: clocks 0 .. 143
        control.on_message(CLOCK, at=10.0 + k * tick)
    reading = clock.reading(10.0 + (6 * PPQN - 1) * tick)
    assert reading is not None
    assert reading.quantum == 4
    assert reading.position == pytest.approx((6 * PPQN - 1) / PPQN)


def test_without_start_the_bar_is_unknown() -> None:
    control, clock = surface()
    last = feed(control, 120.0, 2, 5.0, 0.0)
    reading = clock.reading(last)
    assert reading is not None
    assert reading.quantum is None


def test_stop_freezes_continue_resumes_song_position_moves() -> None:
    control, clock = surface()
    control.on_message(mido.Message("start"), at=0.0)
    last = feed(control, 120.0, 2, 0.0, 0.0)
    control.on_message(mido.Message("stop"), at=last + 0.01)
    frozen = clock.reading(last + 5.0)
    assert frozen is not None
    assert frozen.position == pytest.approx((2 * PPQN - 1) / PPQN)
    assert not clock.running(last + 0.1)
    # song position 16 sixteenths = beat 4 = bar 2; the next clock after continue is there
    control.on_message(mido.Message("songpos", pos=16), at=last + 1.0)
    control.on_message(mido.Message("continue"), at=last + 1.1)
    control.on_message(CLOCK, at=last + 1.2)
    moved = clock.reading(last + 1.2)
    assert moved is not None
    assert moved.position == pytest.approx(4.0, abs=1e-6)
    assert moved.quantum == 4


def test_a_clock_that_stops_without_stop_halts_the_beat() -> None:
    control, clock = surface()
    last = feed(control, 120.0, 2, 0.0, 0.0)
    late = clock.reading(last + 10.0)
    capped = clock.reading(last + MAX_EXTRAPOLATION)
    assert late is not None
    assert capped is not None
    assert late.position == pytest.approx(capped.position)
    assert not clock.running(last + 10.0)


def test_a_tempo_change_is_followed_within_two_beats() -> None:
    control, clock = surface()
    last = feed(control, 120.0, 4, 0.0, 0.0)
    feed(control, 140.0, 2, last + 60.0 / 120.0 / PPQN, 0.0)
    assert clock.tempo == pytest.approx(140.0, abs=0.5)


def test_beats_counted_from_the_clock_land_on_their_frames() -> None:
    """24 fps frames over a 125 BPM clock started with start: beat frames, phase 0 on them,
    downbeats every four beats."""
    control, clock = surface()
    control.on_message(mido.Message("start"), at=0.0)
    counter = BeatCounter()
    fps, beat_period = 24.0, 60.0 / 125.0  # no beat on a frame boundary: 11.52 frames a beat
    tick = 60.0 / 125.0 / PPQN
    beats, downbeats = [], []
    sent = 0
    for i in range(int(9 * beat_period * fps)):
        # the clocks that arrived by this frame's time, then the frame reads the clock
        while sent * tick <= i / fps:
            control.on_message(CLOCK, at=sent * tick)
            sent += 1
        reading = clock.reading(i / fps)
        if reading is None:
            assert sent < 3  # only until three clocks give a tempo
            continue
        fields = counter.frame(reading, 1.0 / fps)
        if fields.beat:
            beats.append(i)
            assert fields.beat_phase == 0.0
            if fields.downbeat:
                downbeats.append(fields.beat_count)
    expected = [int(np.floor(k * beat_period * fps)) for k in range(1, 9)]
    assert beats == expected
    assert downbeats == [4, 8]
