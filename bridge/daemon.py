"""The headless real-time loop: pace frames to the music clock, publish them, listen to OSC.

The frame shown at time t uses the music at t: when the source is a file the renderer looks ahead
by its own measured latency. When rendering is slower than real time the loop jumps to the frame
the clock asks for: frames are dropped (and counted), never queued up. SIGINT and SIGTERM set an
event that the loop checks between frames, so the daemon stops within one frame's time, closes
its outputs and releases shared memory.
"""

from __future__ import annotations

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
from bridge.outputs.base import OutputGroup, create_output
from engine.config import PipelineConfig
from engine.controls import ControlStore
from engine.diffusion.device import resolve_device
from engine.errors import ConfigError, HambaError
from engine.lifecycle import close_concurrently
from engine.profiling.profiler import get_profiler
from engine.render import Conductor, controls_from_config
from osc_schema.schema import MIDI_LEARN

if TYPE_CHECKING:
    from bridge.web import ControlRoom

log = logging.getLogger(__name__)

# never look further ahead than this, whatever a slow frame suggested
_MAX_LOOK_AHEAD = 0.5

CLOSE_TIMEOUT = 6.0
"""Seconds close() waits for its parts at most: the outputs' own drain-and-close bound (5 s,
for a video file's last frames) and a margin. NDI, shm, OSC and OSCQuery take well under 1 s."""


@dataclass
class RunStats:
    """Counters of a run, read by the status line and at exit."""

    frames: int = 0
    dropped: int = 0
    held: int = 0
    errors: int = 0
    render_ms: float = 0.0
    fps: float = 0.0
    last_index: int = -1


class Daemon:
    """Owns the engine, the music source, the outputs and the OSC services for one run."""

    def __init__(
        self,
        config: PipelineConfig,
        options: RunOptions,
        *,
        status_stream: TextIO | None = None,
    ) -> None:
        if options.audio is None and not options.live:
            raise ConfigError("hamba run needs --audio FILE or --live [DEVICE]")
        self.config = config
        self.options = options
        self.stats = RunStats()
        self.stop_event = threading.Event()
        self._status_stream = status_stream if status_stream is not None else sys.stderr
        self.controls = ControlStore(controls_from_config(config, options.preset))
        self._music: MusicSource | None = None
        self._outputs: OutputGroup | None = None
        self._osc: OscServer | None = None
        self._oscquery: OscQueryServer | None = None
        self._feedback: FeedbackSender | None = None
        self._conductor: Conductor | None = None
        self._room: ControlRoom | None = None
        self._synced: SyncedMusic | None = None
        self._link: LinkSession | None = None
        self._midi: MidiSurface | None = None

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

        if opts.live:
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
        self._feedback = FeedbackSender([parse_host_port(t) for t in opts.feedback])
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
            sources["link"] = self._link
            log.info("sync: %s", self._link.description)
        if opts.midi is not None:
            self._midi = MidiSurface(self.controls, opts.midi, quantum=opts.quantum)
            self._midi.open()
            if self._midi.input is not None:
                sources["midi"] = self._midi.clock
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
        assert self._music is not None and self._conductor is not None
        assert self._outputs is not None and self._feedback is not None
        music, conductor, outputs, feedback = (
            self._music,
            self._conductor,
            self._outputs,
            self._feedback,
        )
        fps = self.config.audio.fps
        period = 1.0 / fps
        duration = self.options.duration
        stats = self.stats
        latency = self._warm_up()  # running estimate of render time, for look-ahead
        fps_window: deque[float] = deque()  # wall times of the last second's frames
        # a terminal gets a live line; a log file gets a line every few seconds
        status_every = (
            self.options.status_interval
            if self._status_stream.isatty()
            else max(5.0, self.options.status_interval)
        )
        next_status = time.monotonic() + status_every
        music.start()
        while not self.stop_event.is_set():
            now = music.clock()
            if (duration is not None and now >= duration) or music.finished():
                break
            ahead = min(latency, _MAX_LOOK_AHEAD) if music.can_look_ahead else 0.0
            index = int((now + ahead) * fps)
            if index <= stats.last_index:
                # too early for the next frame: sleep until it is due (less the look-ahead)
                due = (stats.last_index + 1) * period - ahead
                self.stop_event.wait(max(0.0, min(due - now, period)))
                continue
            if stats.last_index >= 0:
                stats.dropped += index - stats.last_index - 1
            started = time.perf_counter()
            state = music.state_at(index, index * period)
            try:
                frame = conductor.render(state, index)
            except HambaError as exc:
                # a show must go on: report, keep the last picture, try again next frame
                stats.errors += 1
                if stats.errors == 1 or stats.errors % 100 == 0:
                    log.error("frame %d failed (%d so far): %s", index, stats.errors, exc)
                stats.last_index = index
                self.stop_event.wait(period)
                continue
            outputs.publish(frame.image, frame.index, frame.time)
            elapsed = time.perf_counter() - started
            outputs.pump()  # main-thread housekeeping of the outputs (syphon discovery)
            # a slow ema: one preempted frame must not swing the look-ahead
            latency = 0.95 * latency + 0.05 * elapsed
            stats.frames += 1
            stats.last_index = index
            stats.render_ms = elapsed * 1000.0
            stats.held = conductor.frames_held
            wall = time.monotonic()
            fps_window.append(wall)
            while fps_window and wall - fps_window[0] > 1.0:
                fps_window.popleft()
            stats.fps = (len(fps_window) - 1) / max(wall - fps_window[0], 1e-3)
            feedback.send_frame(state, fps=stats.fps, frame=index, drops=stats.dropped)
            if wall >= next_status:
                self._print_status(state.beat_count, state.tempo)
                next_status = wall + status_every
        self._print_status(final=True)

    def _warm_up(self) -> float:
        """Render two throw-away frames (first-call costs), return the second one's time."""
        assert self._music is not None and self._conductor is not None
        state = self._music.state_at(0, 0.0)
        elapsed = 0.0
        for _ in range(2):
            started = time.perf_counter()
            self._conductor.render(state, 0)
            elapsed = time.perf_counter() - started
        self._conductor.reset()
        return elapsed

    def _print_status(self, beat: int = 0, tempo: float = 0.0, *, final: bool = False) -> None:
        stats = self.stats
        prompt = self.controls.values.prompt
        short = prompt if len(prompt) <= 40 else prompt[:37] + "..."
        line = (
            f"fps {stats.fps:5.1f} | render {stats.render_ms:6.1f} ms | frames {stats.frames}"
            f" | drops {stats.dropped} | beat {beat} | {tempo:5.1f} BPM"
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
            log.info("done: %d frames, %d dropped (%s)", stats.frames, stats.dropped, per_output)
        elif stream.isatty():
            stream.write("\r" + line[:160].ljust(120))
            stream.flush()
        else:
            log.info("%s", line)
