"""Every live control reaches the picture (issue 11 item 5).

Generated from the schema: every writable incoming address (each control, each chroma prompt by
its own address and in the indexed ``/hamba/prompt/chroma i s`` form, the subscriptions, MIDI
learn) is sent over real UDP (python-osc's client on loopback) to a running daemon: the real
``Daemon.run()`` loop on a thread, with its real OSC server, feedback, MIDI surface and
shared-memory output, on the tiny model at 64x64. The value sent comes from the schema itself,
as a change from the engine's current value (``example_args(..., farthest=True)``: the far end of
a number's range, the other boolean, another choice, another prompt). Its effect is read where
frames leave the engine (the shm output) and compared with a baseline: an identical engine run
with the same music, seed and frames, and no message (each run starts a fresh engine):

- ``CHANGES``, for every address not in :data:`EFFECTS`: a frame after the message differs from
  the baseline's. A control added to the schema later without an effect fails here.
- the other effects, and the engine a control needs for its effect to be visible, are declared
  once, in :data:`EFFECTS`, each with its reason. ``/hamba/beat_source`` chooses what drives the
  picture's beat (``bridge.beats.synced``): its effect is on the frames, and
  ``/hamba/status/beat_source`` reports the source that drove them.

Frames are deterministic: the music's clock stands still until the test moves it
(:class:`SteppedMusic`), so the loop renders frame k when asked, with the music of frame k, in
order, none dropped; a message is sent between two frames and is known handled (an OSC barrier)
before the next frame is asked for. A frame is then a pure function of the music, the seed, the
controls and the previous frames; the frames before the message equal the baseline's byte for
byte (checked in every case). The one layer that cannot run here is the MIDI system: the MIDI
input is the stand-in backend (tests/bridge/midi/standin.py), everything above it is real.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from bridge.beats.base import BeatGrid
from bridge.daemon import Daemon, FrameRecord
from bridge.midi import surface as midi_surface
from bridge.midi.mapping import midi_map_from_data
from bridge.options import RunOptions
from bridge.outputs.shm import ShmFrame, ShmFrameReader
from engine.audio.types import AudioFeatures, MusicState
from engine.config import PipelineConfig
from engine.frame import RGBAImage
from osc_schema.controls import BeatSourceChoice
from osc_schema.schema import (
    BEAT_SOURCE_STATUS,
    ERROR,
    FRAME,
    MIDI_LEARN,
    MIDI_LEARNED,
    SUBSCRIBE,
    UNSUBSCRIBE,
    OscAddress,
    incoming,
    values_of,
)
from tests.bridge.daemon_harness import FeedbackListener, free_port
from tests.bridge.midi.standin import Device, StandInBackend
from tests.bridge.osc.helpers import barrier, example_args, receive, wait_for
from tests.engine.synthetic import make_features

WRITABLE: tuple[OscAddress, ...] = tuple(e for e in incoming() if e.writable)

PRE, POST = 2, 3
"""Frames rendered before the message, and after it."""
SIZE = 64
FPS = 200.0
"""The loop looks at its clock about once a frame period: a short one keeps stepping quick."""
FIRST_FRAME_S = 120.0
"""The first engine of a session loads the model (imports included)."""
MIDI_PORT = "APC40 mkII:APC40 mkII MIDI 1 20:0"

_FRAMES = PRE + POST
MUSIC: AudioFeatures = make_features(
    _FRAMES,
    # a beat every 4 frames: the latent walk moves on every frame
    beats=np.arange(0, _FRAMES, 4),
    # below 1: coherence, the similarity filter and the feedback strength all respond
    energy=np.full(_FRAMES, 0.3),
    # every pitch class sounds alike: each chroma prompt weighs 1/12 in the blend
    chroma=np.ones((12, _FRAMES)),
)


# -- what each control does --------------------------------------------------------------------


class Effect(enum.Enum):
    """What a message must do, seen from outside the engine."""

    CHANGES = "a frame after the message differs from the baseline's"
    FREEZES = "every frame after the message repeats the last one before it"
    BEAT_FOLLOWS = (
        "the frames change, and /hamba/status/beat_source reports the source driving them"
    )
    FEEDBACK_STARTS = "feedback reaches the port from the next frame on; the picture is unchanged"
    FEEDBACK_STOPS = "feedback to the port stops from the next frame on; the picture is unchanged"
    LEARN_ANSWERED = (
        "the next CC moved is answered with /hamba/midi/learned; the picture is unchanged"
    )


@dataclass(frozen=True)
class Context:
    """How the engine runs for a control whose effect needs more than the base engine.

    The base engine: the tiny model at 64x64, one step, no guidance, temporal coherence on
    (blend 0.3), the similarity filter and img2img feedback off, and :data:`MUSIC`, which moves
    every frame at energy 0.3 (so ``/hamba/blend`` and ``/hamba/coherence`` show).
    """

    name: str
    config: tuple[tuple[str, Any], ...] = ()
    """configuration overrides (dotted keys, as ``--set`` takes them)"""
    beat_source: BeatSourceChoice = "auto"
    """``--beat-source``"""
    midi: bool = False
    """a MIDI input (the stand-in device, sending no clock)"""
    feedback: bool = False
    """``--feedback`` to the case's listener from the start"""


BASE = Context("base")
GUIDED = Context("guidance on", config=(("inference.guidance_scale", 5.0),))
IMG2IMG = Context("img2img feedback on", config=(("stream.img2img_feedback", True),))
FILTERED = Context("similarity filter on", config=(("stream.enable_similarity_filter", True),))
SILENT_MIDI_CLOCK = Context(
    "on a silent MIDI clock, feedback on", beat_source="midi", midi=True, feedback=True
)
FEEDBACK = Context("feedback to the listener", feedback=True)

ArgsFor = Callable[[FeedbackListener], list[Any]]
"""The arguments of a message, for the case's feedback listener."""


@dataclass(frozen=True)
class Expect:
    """A control's effect and the engine it needs; ``args`` when the schema cannot say what to
    send (a port, a control's name); ``why`` for every entry."""

    effect: Effect = Effect.CHANGES
    context: Context = BASE
    args: ArgsFor | None = None
    why: str = ""


def _listener_port(listener: FeedbackListener) -> list[Any]:
    return [listener.port]


EFFECTS: Mapping[str, Expect] = {
    "/hamba/pause": Expect(
        Effect.FREEZES, why="pause holds the last frame; frames keep flowing, unchanged"
    ),
    "/hamba/negative_prompt": Expect(
        context=GUIDED,
        why="the unconditional input of classifier-free guidance: without guidance, unused",
    ),
    "/hamba/strength": Expect(
        context=IMG2IMG, why="how far each frame departs from the last in img2img feedback"
    ),
    "/hamba/similarity": Expect(
        context=FILTERED,
        why="the filter's threshold (the filter is off by default); at 0 it holds frames of "
        "music that moves, which 0.98 renders",
    ),
    "/hamba/beat_source": Expect(
        Effect.BEAT_FOLLOWS,
        context=SILENT_MIDI_CLOCK,
        why="a source that is not running changes nothing: the engine starts on a MIDI input "
        "that sends no clock, so the picture's beat stands still; another choice (auto) "
        "gives the beat back to the audio",
    ),
    SUBSCRIBE: Expect(
        Effect.FEEDBACK_STARTS, args=_listener_port, why="subscribes the port it names"
    ),
    UNSUBSCRIBE: Expect(
        Effect.FEEDBACK_STOPS,
        context=FEEDBACK,
        args=_listener_port,
        why="unsubscribes the port it names, fed from the start (--feedback)",
    ),
    MIDI_LEARN: Expect(
        Effect.LEARN_ANSWERED,
        context=SILENT_MIDI_CLOCK,
        args=lambda _listener: ["/hamba/blend"],
        why="binds the next CC moved to the numeric control it names (needs a MIDI input)",
    ),
}


def expectation(address: str) -> Expect:
    """The table's entry, or the default: the message must change the frames."""
    return EFFECTS.get(address, Expect())


# -- the engine under test ---------------------------------------------------------------------


class SteppedMusic:
    """A music source whose clock stands still until the test moves it to a frame.

    Frame ``k``'s music is :data:`MUSIC`'s frame ``k`` (a pure function of ``k``); the clock
    starts before the music, so the loop renders nothing until asked.
    """

    description = "synthetic music on a stepped clock"

    def __init__(self, features: AudioFeatures, fps: float) -> None:
        self.features = features
        self._fps = fps
        self._now = -1.0

    @property
    def can_look_ahead(self) -> bool:
        # no look-ahead: the loop renders exactly the frame the clock names
        return False

    def advance_to(self, index: int) -> None:
        self._now = (index + 0.5) / self._fps

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def clock(self) -> float:
        return self._now

    def finished(self) -> bool:
        return False

    def state_at(self, index: int, time_s: float) -> MusicState:
        return dataclasses.replace(self.features.state_at_frame(index), frame=index, time=time_s)

    def beat_grid(self) -> BeatGrid | None:
        return None


class Engine:
    """A :class:`Daemon` on its real loop (a thread), stepped frame by frame.

    Frames are read back from its shm output; messages go to its OSC port from one python-osc
    client (which also receives the replies).
    """

    def __init__(self, context: Context, listener: FeedbackListener) -> None:
        # a frame's feedback is sent before the loop reports the frame: on loopback it is in
        # the listener's buffer by then, so draining need not wait long for more
        listener.sock.settimeout(0.005)
        self.music = SteppedMusic(MUSIC, FPS)
        self.name = f"controls-{uuid.uuid4().hex[:10]}"
        port = free_port()
        config = PipelineConfig().with_overrides(
            {
                "diffusion.model": "tiny",
                "diffusion.device": "cpu",
                "inference.width": SIZE,
                "inference.height": SIZE,
                "audio.fps": FPS,
                **dict(context.config),
            }
        )
        midi = midi_map_from_data({"input": "APC40"}, source="test") if context.midi else None
        options = RunOptions.model_validate(
            {
                "outputs": ["shm"],
                "name": self.name,
                "osc_host": "127.0.0.1",
                "osc_port": port,
                "oscquery_port": None,
                "feedback": [f"127.0.0.1:{listener.port}"] if context.feedback else [],
                # every frame's feedback: the test moves the clock faster than the default cap
                "feedback_rate": 1000.0,
                "beat_source": context.beat_source,
                "midi": midi,
            }
        )
        self.published: list[FrameRecord] = []
        self.daemon = Daemon(
            config,
            options,
            status_stream=io.StringIO(),
            on_frame=self.published.append,
            music=self.music,
        )
        self.reader = ShmFrameReader(self.name)
        self.osc = SimpleUDPClient("127.0.0.1", port)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hamba-controls-test", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's next wait
            self._failure = exc

    def frame(self, index: int) -> RGBAImage:
        """Move the clock to frame ``index``; the frame once the shm output shows it."""
        self.music.advance_to(index)
        timeout = FIRST_FRAME_S if not self.published else 10.0
        wait_for(lambda: self._finished(index), timeout)
        # the outputs publish on their own lanes: the slot follows the loop shortly
        shown: ShmFrame = wait_for(lambda: self._shown(index), 10.0)
        return shown.image

    def _finished(self, index: int) -> bool:
        if not self._thread.is_alive():
            raise AssertionError(f"the daemon stopped: {self._failure!r}")
        return bool(self.published) and self.published[-1].index >= index

    def _shown(self, index: int) -> ShmFrame | None:
        frame = self.reader.read()
        return frame if frame is not None and frame.index == index else None

    def send(self, address: str, args: list[Any]) -> list[OscMessage]:
        """Send one message; the replies, once the server has handled it."""
        self.osc.send_message(address, args)
        return barrier(self.osc)

    def close(self) -> None:
        self.daemon.stop_event.set()
        self._thread.join(timeout=15.0)
        self.osc.close()
        self.reader.close()
        assert not self._thread.is_alive(), "the daemon did not stop"
        if self._failure is not None:
            raise self._failure


@dataclass
class Run:
    """What one run showed: its frames, and the feedback before and after the message."""

    frames: list[RGBAImage]
    before: dict[str, list[list[Any]]] = field(default_factory=dict)
    after: dict[str, list[list[Any]]] = field(default_factory=dict)
    sent: list[Any] = field(default_factory=list)


AfterMessage = Callable[[Engine, list[Any]], None]
"""What a case does once the frames after the message are in (given the arguments sent)."""


def _feedback(listener: FeedbackListener) -> dict[str, list[list[Any]]]:
    """What the listener got since the last call (it is drained and emptied)."""
    listener.drain()
    got, listener.messages = listener.messages, {}
    return got


def _fed_frames(feedback: Mapping[str, list[list[Any]]]) -> list[int]:
    return [int(args[0]) for args in feedback.get(FRAME, [])]


def run_engine(
    engine: Engine,
    listener: FeedbackListener,
    message: tuple[OscAddress, ArgsFor | None] | None,
    after_message: AfterMessage | None = None,
) -> Run:
    """``PRE`` frames, the message (none for a baseline), ``POST`` frames, ``after_message``.

    The message's arguments are the schema's change from the engine's current value, unless
    the table gives them.
    """
    frames = [engine.frame(k) for k in range(PRE)]
    run = Run(frames, before=_feedback(listener))
    if message is not None:
        entry, args_for = message
        if args_for is not None:
            run.sent = args_for(listener)
        else:
            current = values_of(engine.daemon.controls.values).get(entry.address)
            run.sent = example_args(entry, current, farthest=True)
        version = engine.daemon.controls.snapshot().version
        replies = engine.send(entry.address, run.sent)
        errors = [m.params for m in replies if m.address == ERROR]
        assert not errors, f"{entry.address} {run.sent} was refused: {errors}"
        if entry.control is not None:
            assert engine.daemon.controls.snapshot().version > version, "not applied"
    frames += [engine.frame(k) for k in range(PRE, PRE + POST)]
    run.after = _feedback(listener)
    if after_message is not None:
        after_message(engine, run.sent)
    published = [record.index for record in engine.published]
    assert published == list(range(PRE + POST)), f"frames published: {published}"
    return run


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def midi_device() -> Iterator[Device]:
    """The MIDI device every MIDI context opens (the stand-in backend replaces mido's)."""
    device = Device(MIDI_PORT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(midi_surface, "load_mido", lambda: StandInBackend(device))
        yield device


@dataclass
class Rig:
    """Starts engines in a context, each with its own feedback listener; baselines once."""

    device: Device
    _baselines: dict[Context, Run] = field(default_factory=dict)

    def run(
        self,
        context: Context,
        message: tuple[OscAddress, ArgsFor | None] | None = None,
        after_message: AfterMessage | None = None,
    ) -> Run:
        listener = FeedbackListener()
        engine = Engine(context, listener)
        try:
            return run_engine(engine, listener, message, after_message)
        finally:
            engine.close()
            listener.close()

    def baseline(self, context: Context) -> Run:
        """The context's frames and feedback with no message (run once per module)."""
        if context not in self._baselines:
            self._baselines[context] = self.run(context)
        return self._baselines[context]


@pytest.fixture(scope="module")
def rig(midi_device: Device) -> Rig:
    return Rig(midi_device)


# -- the tests ---------------------------------------------------------------------------------


def _differs(a: RGBAImage, b: RGBAImage) -> bool:
    return not np.array_equal(a, b)


def _learn_answered(device: Device) -> AfterMessage:
    def move_a_knob(engine: Engine, sent: list[Any]) -> None:
        device.play([0xB3, 21, 0])  # CC 21 on channel 4
        (answer,) = receive(engine.osc, 1)
        assert (answer.address, list(answer.params)) == (MIDI_LEARNED, [sent[0], 4, 21])

    return move_a_knob


@pytest.mark.slow  # about a second a case: an engine starts for each
@pytest.mark.parametrize("entry", WRITABLE, ids=lambda e: e.address)
def test_every_live_control_reaches_the_picture(entry: OscAddress, rig: Rig) -> None:
    expect = expectation(entry.address)
    baseline = rig.baseline(expect.context)
    learns = expect.effect is Effect.LEARN_ANSWERED
    run = rig.run(
        expect.context, (entry, expect.args), _learn_answered(rig.device) if learns else None
    )
    what = f"{entry.address} {run.sent} ({expect.context.name})"

    # the runs are comparable: the same frames up to the message
    for k in range(PRE):
        assert np.array_equal(run.frames[k], baseline.frames[k]), f"{what}: frame {k} before it"
    after = range(PRE, PRE + POST)
    changed = [k for k in after if _differs(run.frames[k], baseline.frames[k])]
    effect = expect.effect
    if effect in (Effect.CHANGES, Effect.BEAT_FOLLOWS):
        assert changed, f"{what}: every frame after it is the baseline's ({effect.value})"
    elif effect is Effect.FREEZES:
        moving = [k for k in after if _differs(baseline.frames[k], baseline.frames[PRE - 1])]
        assert moving, "the baseline must move for a freeze to show"
        held = [k for k in after if not _differs(run.frames[k], run.frames[PRE - 1])]
        assert held == list(after), f"{what}: frames {held} of {list(after)} held"
    else:
        # subscriptions and learning are not pixels: the picture stays the baseline's
        assert changed == [], f"{what}: frames {changed} changed"
    if effect is Effect.BEAT_FOLLOWS:
        reported = (run.before.get(BEAT_SOURCE_STATUS), run.after.get(BEAT_SOURCE_STATUS))
        assert reported == ([["midi"]] * PRE, [["audio"]] * POST), f"{what}: {reported}"
    elif effect is Effect.FEEDBACK_STARTS:
        assert _fed_frames(run.before) == [], f"{what}: feedback before subscribing"
        assert _fed_frames(run.after) == list(after), f"{what}: {run.after}"
    elif effect is Effect.FEEDBACK_STOPS:
        assert _fed_frames(run.before) == list(range(PRE)), f"{what}: {run.before}"
        assert _fed_frames(run.after) == [], f"{what}: feedback after unsubscribing"


def test_the_table_covers_only_writable_addresses_and_says_why() -> None:
    writable = {e.address for e in WRITABLE}
    assert set(EFFECTS) <= writable, sorted(set(EFFECTS) - writable)
    assert all(expect.why for expect in EFFECTS.values())
    # the chroma prompts: twelve per-item addresses and the indexed (i, s) form, all tested
    chroma = sorted(a for a in writable if a.startswith("/hamba/prompt/chroma"))
    assert "/hamba/prompt/chroma" in chroma
    assert {f"/hamba/prompt/chroma/{i}" for i in range(12)} <= set(chroma)
