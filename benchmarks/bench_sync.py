"""What the beat layer costs the render loop, and how well a MIDI clock is read.

Measures, in one process, with no network (the Link peer is never enabled: a disabled
LinkPython-extern instance opens no socket, only an eventfd, an epoll and a timerfd):

- ``SyncedMusic.state_at`` over a music source that returns a ready state, so only the
  wrapper is timed: beat source audio (pass-through), a MIDI clock, Link (session state
  captured from LinkPython-extern each frame);
- the feedback providers the daemon adds each frame (beat source, Link state);
- ``MidiClock.handle`` per clock (the Theil-Sen fit over two beats) and
  ``MidiControl.on_message`` for a CC (schema parse and store update);
- MIDI clock tempo error: 8 beats of 24 ppqn at 125 BPM with Gaussian arrival jitter, 20 seeds.

Writes ``benchmarks/results/sync.json`` with the conditions.
Run: ``.venv/bin/python -m benchmarks.bench_sync [--frames N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido
import numpy as np

from bridge.beats.base import BeatGrid, BeatSource
from bridge.beats.synced import SyncedMusic
from bridge.link.session import LinkSession
from bridge.midi.clock import PPQN, MidiClock
from bridge.midi.control import MidiControl
from bridge.midi.mapping import midi_map_from_data
from engine.audio.types import MusicState
from engine.controls import ControlStore

DEFAULT_OUT = Path(__file__).parent / "results" / "sync.json"
FPS = 60.0


class ReadyMusic:
    """A music source whose states cost nothing: only the wrapper is measured."""

    description = "ready states"
    can_look_ahead = True

    def __init__(self) -> None:
        self._state = MusicState(0, 0.0, 0.5, 0.1, False, 0.0, 0, 120.0, np.zeros(12, np.float32))
        self._start = time.monotonic()

    def start(self) -> None:
        self._start = time.monotonic()

    def stop(self) -> None:
        pass

    def clock(self) -> float:
        return time.monotonic() - self._start

    def finished(self) -> bool:
        return False

    def state_at(self, index: int, time_s: float) -> MusicState:
        return self._state

    def beat_grid(self) -> BeatGrid | None:
        return BeatGrid(0.5, self._start)


def per_call_us(call: Callable[[int], object], count: int) -> dict[str, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "calls": count,
        "median_us": statistics.median(samples),
        "p99_us": samples[int(0.99 * (count - 1))],
    }


def ticking_clock() -> MidiClock:
    clock = MidiClock(quantum=4)
    now = time.monotonic()
    period = 60.0 / 125.0 / PPQN
    clock.handle("start", now - 2.0)
    for k in range(2 * PPQN):
        clock.handle("clock", now - 2.0 + k * period)
    return clock


def state_at_cost(frames: int) -> dict[str, Any]:
    music = ReadyMusic()
    link = LinkSession("follow")  # never started: no network, the session state is local
    sources: dict[str, BeatSource] = {"midi": ticking_clock(), "link": link}
    results: dict[str, Any] = {}
    for name in ("audio", "midi", "link"):
        store = ControlStore()
        store.set("beat_source", name)
        synced = SyncedMusic(music, store, FPS, sources)
        synced.start()

        def state_at(i: int, s: SyncedMusic = synced) -> MusicState:
            return s.state_at(i, i / FPS)

        results[name] = per_call_us(state_at, frames)
        synced.stop()
    results["feedback_beat_source"] = per_call_us(lambda _i: synced.feedback_values(), frames)
    results["feedback_link"] = per_call_us(lambda _i: link.feedback_values(), frames)
    return results


def midi_costs(count: int) -> dict[str, Any]:
    clock = MidiClock()
    period = 60.0 / 125.0 / PPQN
    clock_cost = per_call_us(lambda k: clock.handle("clock", 100.0 + k * period), count)
    mapping = midi_map_from_data(
        {"input": "bench", "cc": [{"cc": 1, "control": "blend", "takeover": "jump"}]},
        source="bench",
    )
    control = MidiControl(ControlStore(), mapping)
    messages = [mido.Message("control_change", control=1, value=v % 128) for v in range(count)]
    cc_cost = per_call_us(lambda k: control.on_message(messages[k]), count)
    return {"clock_handle": clock_cost, "cc_on_message": cc_cost}


def clock_accuracy(seeds: int) -> list[dict[str, float]]:
    rows = []
    period = 60.0 / 125.0 / PPQN
    for jitter_ms in (0.0, 1.0, 2.0, 5.0):
        errors = []
        for seed in range(seeds):
            clock = MidiClock()
            rng = np.random.default_rng(seed)
            for k in range(8 * PPQN):
                clock.handle("clock", 100.0 + k * period + rng.normal(0.0, jitter_ms / 1000))
            errors.append(abs(clock.tempo - 125.0))
        rows.append(
            {
                "jitter_ms": jitter_ms,
                "max_error_bpm": max(errors),
                "median_error_bpm": statistics.median(errors),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--seeds", type=int, default=20, help="jittered clocks per jitter")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    from engine.profiling.profiler import conditions

    results: dict[str, Any] = {
        "benchmark": "sync",
        "conditions": conditions(),
        "state_at": state_at_cost(args.frames),
        "midi": midi_costs(min(args.frames, 5000)),
        "clock_accuracy_125_bpm": clock_accuracy(args.seeds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name, row in results["state_at"].items():
        print(f"{name:22s} {row['median_us']:7.1f} us median, {row['p99_us']:.1f} p99")
    for name, row in results["midi"].items():
        print(f"{name:22s} {row['median_us']:7.1f} us median, {row['p99_us']:.1f} p99")
    for row in results["clock_accuracy_125_bpm"]:
        print(
            f"clock jitter {row['jitter_ms']:.0f} ms: tempo error max {row['max_error_bpm']:.3f}"
            f" BPM, median {row['median_error_bpm']:.3f}"
        )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
