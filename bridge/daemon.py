"""The headless real-time loop: pace frames to the music clock, publish them, listen to OSC.

The frame shown at time t uses the music at t: when the source is a file the renderer looks ahead
by its own measured latency. When rendering is slower than real time the loop jumps to the frame
the clock asks for: frames are dropped (and counted), never queued up. SIGINT and SIGTERM set an
event that the loop checks between frames, so the daemon stops within one frame's time, closes
its outputs and releases shared memory.

The loop is pipelined by default (``RunOptions.pipelined``): frame n + 1 is planned and launched
before frame n is waited for and published, so on a device that renders off the Python thread
(CUDA, the ``null-fixed`` measuring model) the host's work for one frame overlaps the model's
work on the other; a frame still uses the controls and the music of its own time, and is
published at most one frame later than in the sequential loop. A render that completes on the
Python thread (the cpu) is published at once, as in the sequential loop.

Whatever fails in a frame (a typed error, a torch ``RuntimeError``, a frame whose model output
held NaN or infinity) is reported, rate-limited, in the log and over OSC
(``/hamba/status/error``); the outputs keep the last good frame and the loop goes on. When the
device runs out of memory the engine frees its cache and steps down: the stream batch off first,
then half the render size (frames still leave at the configured size).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import torch

from bridge.beats.base import BeatSource
from bridge.beats.synced import SyncedMusic
from bridge.link.session import LinkSession
from bridge.midi.surface import MidiSurface, learn_unavailable
from bridge.music import FileMusic, LiveMusic, MusicSource
from bridge.options import RunOptions, parse_host_port
from bridge.osc.access import exposure, parse_networks
from bridge.osc.feedback import FeedbackSender
from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer
from bridge.osc.throttle import LogThrottle
from bridge.outputs.base import OutputGroup, OutputStats, create_output
from engine.audio.types import MusicState
from engine.config import PipelineConfig
from engine.controls import ControlStore
from engine.diffusion.device import is_out_of_memory, resolve_device
from engine.diffusion.host import NonFiniteFrameError
from engine.errors import ConfigError, HambaError
from engine.lifecycle import close_concurrently
from engine.profiling.profiler import get_profiler
from engine.render import Conductor, PendingFrame, controls_from_config
from osc_schema.controls import LiveControls
from osc_schema.schema import MIDI_LEARN

if TYPE_CHECKING:
    from bridge.web import ControlRoom

log = logging.getLogger(__name__)

# never look further ahead than this, whatever a slow frame suggested
_MAX_LOOK_AHEAD = 0.5
# while a frame is in flight and the next is not due, look whether it is ready this often
_POLL_S = 0.0005
# failed frames are logged and sent over OSC at most once per this many seconds
_ERROR_INTERVAL_S = 5.0

CLOSE_TIMEOUT = 6.0
"""Seconds close() waits for its parts at most: the outputs' own drain-and-close bound (5 s,
for a video file's last frames) and a margin. NDI, shm, OSC and OSCQuery take well under 1 s."""


@dataclass
class RunStats:
    """Counters of a run, read by the status line and at exit.

    ``last_index`` is the last frame launched, ``published_index`` the last one published;
    ``render_ms`` runs from planning a frame to publishing it, ``host_ms`` is the main thread's
    own work for it (plan, launch, publish, feedback; waiting for the model excluded);
    ``note`` says how the engine stepped down after running out of memory.
    """

    frames: int = 0
    dropped: int = 0
    held: int = 0
    errors: int = 0
    out_of_memory: int = 0
    render_ms: float = 0.0
    host_ms: float = 0.0
    fps: float = 0.0
    last_index: int = -1
    published_index: int = -1
    note: str = ""


@dataclass(frozen=True, eq=False)
class FrameRecord:
    """One published frame, as an observer of the loop (a benchmark, a test) sees it.

    ``clock`` is the music clock when the frame was published (so ``clock - time`` is its
    latency from the music it shows); ``host_ms`` the main thread's own work for it,
    ``wait_ms`` how long the loop waited for the model, ``render_ms`` the time from planning
    it to publishing it; ``launched`` the newest frame launched by then (the pipelined loop
    launches at most one frame ahead); ``controls`` the controls it was planned with.
    """

    index: int
    time: float
    clock: float
    host_ms: float
    wait_ms: float
    render_ms: float
    launched: int
    controls: LiveControls


class Daemon:
    """Owns the engine, the music source, the outputs and the OSC services for one run."""

    def __init__(
        self,
        config: PipelineConfig,
        options: RunOptions,
        *,
        status_stream: TextIO | None = None,
        on_frame: Callable[[FrameRecord], None] | None = None,
        music: MusicSource | None = None,
    ) -> None:
        """``on_frame`` is called on the loop's thread after each published frame; ``music``
        replaces the source the options name (a benchmark's precomputed features)."""
        if music is None and options.audio is None and not options.live:
            raise ConfigError("hamba run needs --audio FILE or --live [DEVICE]")
        self.config = config
        self.options = options
        self.stats = RunStats()
        self.stop_event = threading.Event()
        self._status_stream = status_stream if status_stream is not None else sys.stderr
        self.controls = ControlStore(controls_from_config(config, options.preset))
        self._music: MusicSource | None = None
        self._given_music = music
        self._outputs: OutputGroup | None = None
        self._osc: OscServer | None = None
        self._oscquery: OscQueryServer | None = None
        self._feedback: FeedbackSender | None = None
        self._conductor: Conductor | None = None
        self._room: ControlRoom | None = None
        self._synced: SyncedMusic | None = None
        self._link: LinkSession | None = None
        self._midi: MidiSurface | None = None
        self._on_frame = on_frame
        self.output_stats: dict[str, OutputStats] = {}  # each output's counts, after close
        self._fps_window: deque[float] = deque()  # wall times of the last second's frames
        self._latency = 0.0
        self._next_status_perf = 0.0
        self._errors_log = LogThrottle(log, burst=1, interval=_ERROR_INTERVAL_S)
        self._last_error_sent = -float("inf")

    # -- set-up and tear-down ------------------------------------------------------------------

    def setup(self) -> None:
        """Open the outputs, OSC services, music source and model (may raise HambaError).

        What a mistyped flag or a busy port breaks fails before the model loads: the outputs
        are built (spec, platform, native library) and the device is checked first, then the
        music source opens (an unknown input device fails there) and the OSC ports are bound.
        The outputs open last, once the model is ready to fill them.
        """
        config = self.config
        opts = self.options
        publishers = [
            create_output(spec, name=opts.name, audio_path=opts.audio) for spec in opts.outputs
        ]
        self._room = None
        if opts.oscquery_port is not None:
            from bridge.web import ControlRoom

            self._room = ControlRoom(name=opts.name)
            if self._room.preview is not None:
                # its own lane: costs the loop a queue append
                publishers.append(self._room.preview)
        resolve_device(config.diffusion.device)

        if self._given_music is not None:
            self._music = self._given_music
        elif opts.live:
            self._music = LiveMusic(opts.live_device, config.audio)
        else:
            assert opts.audio is not None
            self._music = FileMusic(opts.audio, config.audio, loop=opts.loop, audible=opts.audible)
        log.info("music: %s", self._music.description)
        # link and midi before the model: a missing library or port fails in a second
        self._music = self._synced = self._setup_sync(self._music)
        self._start_services()

        self._conductor = Conductor.from_config(config, self.controls)
        if self._conductor.stream.base.device.type == "cpu":
            # leave a core to the audio, osc and output threads: the render must not starve them
            threads = max(1, (os.cpu_count() or 1) - 1)
            torch.set_num_threads(threads)
            log.info("cpu: %d render thread(s)", threads)

        self._outputs = OutputGroup(publishers)
        self._outputs.open(config.inference.width, config.inference.height, config.audio.fps)
        log.info("outputs: %s", ", ".join(p.name for p in publishers))

    def _start_services(self) -> None:
        """Feedback, the OSC server and OSCQuery: ControlError names a port that is taken."""
        opts = self.options
        self._feedback = FeedbackSender(
            [parse_host_port(t) for t in opts.feedback], max_rate=opts.feedback_rate
        )
        if self._synced is not None:
            self._feedback.add_provider(self._synced.feedback_values)
        if self._link is not None:
            self._feedback.add_provider(self._link.feedback_values)
        allow = parse_networks(opts.osc_allow)
        self._osc = OscServer(
            self.controls, opts.osc_host, opts.osc_port, feedback=self._feedback, allow=allow
        )
        self._osc.add_handler(
            MIDI_LEARN, self._midi.osc_learn if self._midi is not None else learn_unavailable
        )
        self._osc.start()
        if opts.oscquery_port is not None:
            self._oscquery = OscQueryServer(
                self.controls,
                host=opts.osc_host,
                http_port=opts.oscquery_port,
                osc_port=self._osc.port,
                name=opts.name,
                feedback=self._feedback,
                osc=self._osc,
                token=opts.control_token,
                mounts=[self._room] if self._room is not None else (),
            )
            self._oscquery.start()
        for line in exposure(
            opts.osc_host,
            self._osc.port,
            self._oscquery.http_port if self._oscquery is not None else None,
            allow,
            opts.control_token is not None,
        ):
            log.info("%s", line)

    def _setup_sync(self, music: MusicSource) -> SyncedMusic:
        """Link, MIDI and the beat-source choice around the music (see bridge.beats.synced)."""
        opts = self.options
        sources: dict[str, BeatSource] = {}
        if opts.link != "off":
            grid = music.beat_grid()
            self._link = LinkSession(
                opts.link,
                quantum=opts.quantum,
                tempo=grid.tempo if grid is not None else 120.0,
                grid=music.beat_grid,
            )
            self._link.start()
            sources[self._link.name] = self._link
            log.info("sync: %s", self._link.description)
        if opts.midi is not None:
            self._midi = MidiSurface(self.controls, opts.midi, quantum=opts.quantum)
            self._midi.open()
            if self._midi.input is not None:
                sources[self._midi.clock.name] = self._midi.clock
            log.info("sync: %s", self._midi.description)
        synced = SyncedMusic(music, self.controls, self.config.audio.fps, sources)
        if self._midi is not None and self._midi.notes is not None:
            synced.add_beat_listener(self._midi.notes.on_beat)
        if opts.beat_source != "auto":
            self.controls.update({"beat_source": opts.beat_source}, source="--beat-source")
        return synced

    def close(self) -> None:
        """Stop everything that was started, all at once; safe to call twice.

        OSCQuery (with its mDNS goodbye), the OSC server, the outputs and the music stop
        concurrently, so a SIGTERM takes as long as the slowest of them, not their sum; each
        bounds its own wait, and whatever is still closing after ``CLOSE_TIMEOUT`` is left.
        """
        gc.unfreeze()
        if self._osc is not None:
            osc_stats = self._osc.stats
            log.info(
                "osc: %d packets, %d applied, %d rejected, %d malformed, %d refused (--osc-allow)",
                *(
                    osc_stats.packets,
                    osc_stats.applied,
                    osc_stats.rejected,
                    osc_stats.malformed,
                    osc_stats.refused,
                ),
            )
        oscquery, osc, feedback = self._oscquery, self._osc, self._feedback
        outputs, music, midi, link = self._outputs, self._music, self._midi, self._link
        self._oscquery = self._osc = self._feedback = None
        self._outputs = self._music = self._synced = None
        self._midi = self._link = None

        def stop_osc() -> None:
            if osc is not None:
                osc.stop()
            if feedback is not None:
                feedback.close()

        steps: list[tuple[str, Callable[[], None]]] = [("osc", stop_osc)]
        if oscquery is not None:
            steps.append(("oscquery", oscquery.stop))
        if outputs is not None:
            steps.append(("outputs", outputs.close))
        if music is not None:
            steps.append(("music", music.stop))
        if midi is not None:
            steps.append(("midi", midi.close))
        if link is not None:
            steps.append(("link", link.stop))
        close_concurrently(steps, CLOSE_TIMEOUT, log)
        if outputs is not None:
            self.output_stats = outputs.stats()
        profiling = self.config.profiling
        if profiling.enabled and profiling.export_path is not None:
            get_profiler().export_json(profiling.export_path)

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the loop cleanly (main thread only)."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> RunStats:
        """Set up, loop until stopped (signal, duration, end of file), then close."""
        try:
            self.setup()
            self._loop()
        finally:
            self.close()
        return self.stats

    def _loop(self) -> None:
        assert self._music is not None
        assert self._conductor is not None
        music, stats = self._music, self.stats
        fps = self.config.audio.fps
        self._latency = self._warm_up()  # running estimate of plan-to-publish time
        # what set-up made (the model, the libraries) stays: frozen, a full collection does not
        # walk it again mid-show (one took over 100 ms here); unfrozen in close()
        gc.collect()
        gc.freeze()
        self._next_status_perf = time.perf_counter() + self._status_every()
        in_flight: _Launched | None = None
        music.start()
        while not self.stop_event.is_set():
            now = music.clock()
            if self._ended(now):
                break
            ahead = min(self._latency, _MAX_LOOK_AHEAD) if music.can_look_ahead else 0.0
            index = int((now + ahead) * fps)
            if index <= stats.last_index:
                in_flight = self._wait_for_next(now, ahead, in_flight)
            else:
                in_flight = self._advance(index, in_flight)
        if in_flight is not None:
            self._finish(in_flight)
        self._print_status(final=True)

    @property
    def _period(self) -> float:
        """Seconds per frame at the configured rate."""
        return 1.0 / self.config.audio.fps

    def _ended(self, now: float) -> bool:
        """The run is over: its duration has passed, or the music has finished."""
        assert self._music is not None
        duration = self.options.duration
        return (duration is not None and now >= duration) or self._music.finished()

    def _wait_for_next(
        self, now: float, ahead: float, in_flight: _Launched | None
    ) -> _Launched | None:
        """Too early for the next frame: publish the one in flight as soon as it is ready, else
        sleep until the next is due (less the look-ahead); the frame still in flight after."""
        if in_flight is not None and in_flight.pending.ready():
            self._finish(in_flight)
            return None
        period = self._period
        due = (self.stats.last_index + 1) * period - ahead
        wait = max(0.0, min(due - now, period))
        if in_flight is not None:
            wait = min(wait, _POLL_S)
        self.stop_event.wait(wait)
        return in_flight

    def _advance(self, index: int, in_flight: _Launched | None) -> _Launched | None:
        """Launch frame ``index`` (the frames skipped to reach it count as dropped) and finish
        the one in flight; the new frame stays in flight while pipelined and not yet ready."""
        stats = self.stats
        if stats.last_index >= 0:
            stats.dropped += index - stats.last_index - 1
        launched = self._launch(index, index * self._period)
        # frame n is finished (waited for, published) only once n + 1 is on its way
        if in_flight is not None:
            self._finish(in_flight)
        if launched is None:
            return None
        if self.options.pipelined and not launched.pending.ready():
            return launched
        self._finish(launched)
        return None

    def _launch(self, index: int, time_s: float) -> _Launched | None:
        """Plan frame ``index`` and start rendering it; None when that failed (reported)."""
        assert self._music is not None
        assert self._conductor is not None
        started = time.perf_counter()
        self.stats.last_index = index
        conductor = self._conductor
        try:
            state = self._music.state_at(index, time_s)
            pending = conductor.launch(conductor.plan(state, index))
        except Exception as exc:  # noqa: BLE001 - any failure of one frame: the show goes on
            self._frame_failed(index, exc)
            if self._outputs is not None:
                self._outputs.pump()
            return None
        return _Launched(index, state, pending, started, time.perf_counter() - started)

    def _finish(self, launched: _Launched) -> None:
        """Wait for a launched frame, publish it, send its feedback, pump the outputs."""
        assert self._outputs is not None
        assert self._feedback is not None
        stats, outputs = self.stats, self._outputs
        waited = time.perf_counter()
        try:
            frame = launched.pending.wait()
        except Exception as exc:  # noqa: BLE001 - e.g. NaN in the model's output: never published
            self._frame_failed(launched.index, exc)
            outputs.pump()
            return
        resumed = time.perf_counter()
        outputs.publish(frame.image, frame.index, frame.time)
        stats.frames += 1
        stats.published_index = frame.index
        self._feedback.send_frame(
            launched.state, fps=stats.fps, frame=frame.index, drops=stats.dropped
        )
        outputs.pump()
        done = time.perf_counter()
        elapsed = done - launched.started
        # a slow ema: one preempted frame must not swing the look-ahead
        self._latency = 0.95 * self._latency + 0.05 * elapsed
        stats.render_ms = elapsed * 1000.0
        stats.host_ms = (launched.host_s + done - resumed) * 1000.0
        stats.held = self._conductor.frames_held if self._conductor is not None else 0
        self._count_fps(time.monotonic())
        if self._on_frame is not None:
            self._on_frame(
                FrameRecord(
                    frame.index,
                    frame.time,
                    self._music.clock() if self._music is not None else 0.0,
                    stats.host_ms,
                    (resumed - waited) * 1000.0,
                    stats.render_ms,
                    stats.last_index,
                    launched.pending.request.controls,
                )
            )
        if done >= self._next_status_perf:
            self._print_status(launched.state.beat_count, launched.state.tempo)

    def _count_fps(self, wall: float) -> None:
        window = self._fps_window
        window.append(wall)
        while wall - window[0] > 1.0:
            window.popleft()
        self.stats.fps = (len(window) - 1) / max(wall - window[0], 1e-3)

    def _frame_failed(self, index: int, exc: Exception) -> None:
        """Report a failed frame (rate-limited), keep the last good picture, step down on OOM."""
        stats = self.stats
        stats.errors += 1
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HambaError) else str(exc)
        stepped = False
        if is_out_of_memory(exc) and self._conductor is not None:
            stats.out_of_memory += 1
            change = self._conductor.step_down()
            stepped = change is not None
            stats.note = f"out of memory: {change}" if change else "out of memory, at the floor"
            reason = f"{stats.note} ({reason})"
            log.warning("frame %d: %s", index, reason)
        elif isinstance(exc, NonFiniteFrameError) and self._conductor is not None:
            # NaN must not feed back into the next frames (img2img, coherence, stream batch)
            self._conductor.stream.reset()
        if not stepped:
            self._errors_log.log(
                logging.ERROR,
                "frame %d failed (%d so far, showing the last good frame): %s",
                index,
                stats.errors,
                reason,
            )
        now = time.monotonic()
        if stepped or now - self._last_error_sent >= _ERROR_INTERVAL_S:
            self._last_error_sent = now
            if self._feedback is not None:
                self._feedback.send_error(index, reason)

    def _warm_up(self) -> float:
        """Render two throw-away frames (first-call costs), return the second one's time."""
        assert self._music is not None
        assert self._conductor is not None
        state = self._music.state_at(0, 0.0)
        elapsed = 0.0
        for _ in range(2):
            started = time.perf_counter()
            self._conductor.render(state, 0)
            elapsed = time.perf_counter() - started
        self._conductor.reset()
        return elapsed

    def _status_every(self) -> float:
        # a terminal gets a live line; a log file gets a line every few seconds
        interval = self.options.status_interval
        return interval if self._status_stream.isatty() else max(5.0, interval)

    def _print_status(self, beat: int = 0, tempo: float = 0.0, *, final: bool = False) -> None:
        self._next_status_perf = time.perf_counter() + self._status_every()
        stats = self.stats
        prompt = self.controls.values.prompt
        short = prompt if len(prompt) <= 40 else prompt[:37] + "..."
        errors = f" | errors {stats.errors}" if stats.errors else ""
        note = f" ({stats.note})" if stats.note else ""
        line = (
            f"fps {stats.fps:5.1f} | render {stats.render_ms:6.1f} ms | frames {stats.frames}"
            f" | drops {stats.dropped}{errors}{note} | beat {beat} | {tempo:5.1f} BPM"
            f" ({self._synced.active if self._synced is not None else 'audio'})"
            f"{' | paused' if self.controls.values.pause else ''} | {short!r}"
        )
        stream = self._status_stream
        if final:
            outputs = self._outputs.stats() if self._outputs is not None else {}
            per_output = "; ".join(
                f"{name}: {o.published} published, {o.dropped} dropped, {o.errors} errors"
                for name, o in outputs.items()
            )
            log.info(
                "done: %d frames, %d dropped, %d failed%s (%s)",
                stats.frames,
                stats.dropped,
                stats.errors,
                note,
                per_output,
            )
        elif stream.isatty():
            stream.write("\r" + line[:160].ljust(120))
            stream.flush()
        else:
            log.info("%s", line)


@dataclass(frozen=True, eq=False)
class _Launched:
    """A frame planned and on its way: what finishing it needs."""

    index: int
    state: MusicState
    pending: PendingFrame
    started: float  # perf_counter when planning began
    host_s: float  # main-thread time spent planning and launching it
