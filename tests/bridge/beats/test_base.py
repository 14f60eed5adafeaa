"""The beat arithmetic every clock-like source shares: readings -> a frame's beat fields."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bridge.beats.base import BeatCounter, BeatGrid, BeatReading, FrameBeat, fit_grid
from osc_schema.controls import LiveControls
from osc_schema.schema import BEAT_SOURCES


def frames(
    bpm: float, fps: float, seconds: float, offset: float, quantum: float | None
) -> list[FrameBeat]:
    """The fields of every frame of a steady timeline that has beat 0 at ``offset`` seconds."""
    counter = BeatCounter()
    out: list[FrameBeat] = []
    for i in range(int(seconds * fps)):
        position = (i / fps - offset) * bpm / 60.0
        out.append(counter.frame(BeatReading(position, bpm, quantum), 1.0 / fps))
    return out


def test_beats_fall_in_the_frame_their_time_falls_in() -> None:
    bpm, fps, offset = 128.0, 20.0, 0.013
    got = [i for i, f in enumerate(frames(bpm, fps, 10.0, offset, None)) if f.beat]
    beat_times = offset + np.arange(0, 30) * 60.0 / bpm
    # the first frame after a start never fires (nothing was shown before it)
    expected = [math.floor(t * fps) for t in beat_times if 1 <= math.floor(t * fps) < 200]
    assert got == expected


def test_phase_is_zero_on_a_beat_frame_and_rises_to_the_next() -> None:
    fields = frames(120.0, 24.0, 5.0, 0.0, None)
    beats = [i for i, f in enumerate(fields) if f.beat]
    for a, b in itertools.pairwise(beats):
        assert fields[a].beat_phase == 0.0
        between = [fields[i].beat_phase for i in range(a, b)]
        assert between == sorted(between)
        assert between[-1] < 1.0
        assert fields[b].beat_count == fields[a].beat_count + 1


def test_bars_and_downbeats_where_the_source_knows_them() -> None:
    fields = frames(120.0, 20.0, 6.0, 0.0, 4.0)
    downbeats = [f.beat_count for f in fields if f.downbeat]
    assert downbeats == [4, 8]  # beats 4 and 8 start bars (the count started at bar 0)
    on_beats = [f for f in fields if f.beat]
    assert all(f.bar_phase == pytest.approx((f.beat_count % 4) / 4) for f in on_beats)
    assert all(f.bar_phase is None for f in frames(120.0, 20.0, 2.0, 0.0, None))


def test_a_beat_in_a_dropped_frame_fires_on_the_next_frame_shown() -> None:
    counter = BeatCounter()
    shown = [0, 1, 2, 3, 7, 8, 9, 10, 11]  # frames 4-6 dropped; a beat falls in frame 5
    beats = []
    for i in shown:
        position = (i / 10.0 - 0.0) * 120.0 / 60.0 - 0.9  # beat 0 at 0.45 s: frame 4
        fields = counter.frame(BeatReading(position, 120.0), 0.1)
        if fields.beat:
            beats.append(i)
    assert beats == [7, 9]  # beat 0 (frame 4) shows on frame 7; beat 1 at 0.95 s: frame 9


def test_the_count_starts_at_the_bar_of_the_first_reading() -> None:
    counter = BeatCounter()
    first = counter.frame(BeatReading(1001.5, 120.0, 4.0), 0.05)
    assert first.beat_count == 1  # beat 1001 is the second beat of the bar at 1000
    assert first.beat is False  # the first frame after a (re)start never fires


def test_fit_grid_finds_period_and_anchor_through_jitter_and_a_missed_beat() -> None:
    rng = np.random.default_rng(0)
    period, anchor = 60.0 / 123.0, 2.0
    times = anchor + np.arange(40) * period + rng.uniform(-0.01, 0.01, 40)
    times = np.delete(times, 20)  # the tracker missed one
    grid = fit_grid(times, around=anchor + 20.3 * period)
    assert grid is not None
    assert grid.tempo == pytest.approx(123.0, abs=0.3)
    assert (grid.anchor - anchor) / period == pytest.approx(20, abs=0.02)
    assert fit_grid(times[:2], around=0.0) is None


def test_a_grid_positions_and_shifts() -> None:
    grid = BeatGrid(0.5, 10.0)
    assert grid.tempo == 120.0
    assert grid.position(11.25) == 2.5
    assert grid.shifted(1.0).position(11.25) == 0.5


def test_beat_source_names_come_from_the_schema() -> None:
    assert set(BEAT_SOURCES) | {"auto"} == set(
        LiveControls.model_fields["beat_source"].annotation.__args__  # type: ignore[union-attr]
    )
