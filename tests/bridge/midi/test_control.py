"""MIDI messages through MidiControl.on_message (the rtmidi callback's entry point) to the store.

Messages are real mido messages; what they change goes through the ControlStore, checked
against osc_schema, like an OSC message.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import mido
import pytest

from bridge.midi.control import MidiControl, binding_toml
from bridge.midi.mapping import CcBinding, MidiMap, midi_map_from_data, preset_choices
from engine.controls import ControlStore
from engine.errors import ControlError
from osc_schema.controls import LiveControls
from osc_schema.schema import lookup, parse_message

SETS = {"ice": [f"ice {i}" for i in range(12)]}


def mapping(**extra: Any) -> MidiMap:
    data: dict[str, Any] = {
        "input": "test",
        "cc": [
            {"cc": 1, "control": "blend", "takeover": "jump"},
            {"cc": 2, "control": "strength"},  # soft takeover
            {"cc": 3, "control": "seed", "takeover": "jump"},
            {"cc": 4, "control": "coherence"},
            {"cc": 5, "control": "reactivity", "channel": 2, "takeover": "jump"},
        ],
        "note": [
            {"note": 60, "action": "pause"},
            {"note": 61, "action": "next_preset"},
            {"note": 62, "action": "previous_preset"},
            {"note": 63, "action": "reseed"},
            {"note": 64, "action": "chroma_set", "set": "ice"},
        ],
        "chroma_sets": SETS,
    }
    data.update(extra)
    return midi_map_from_data(data, source="test")


class Recorded:
    """A store and the sources of every update it took."""

    def __init__(self, **extra: Any) -> None:
        self.store = ControlStore()
        self.changes: list[frozenset[str]] = []
        self.store.subscribe(lambda _values, changed: self.changes.append(changed))
        self.control = MidiControl(self.store, mapping(**extra), rng=random.Random(7))

    def send(self, kind: str, **fields: Any) -> None:
        self.control.on_message(mido.Message(kind, **fields))

    @property
    def values(self) -> LiveControls:
        return self.store.values


def cc(r: Recorded, number: int, value: int, channel: int = 0) -> None:
    r.send("control_change", control=number, value=value, channel=channel)


def test_cc_sets_the_control_scaled_to_its_range() -> None:
    r = Recorded()
    cc(r, 1, 127)
    assert r.values.blend == 1.0
    cc(r, 1, 0)
    assert r.values.blend == 0.0
    cc(r, 1, 64)
    # the value that lands is what /hamba/blend would set: float32 precision, via the schema
    assert r.values.blend == parse_message("/hamba/blend", [64 / 127])["blend"]
    cc(r, 3, 127)
    assert r.values.seed == lookup("/hamba/seed").arguments[0].maximum
    cc(r, 4, 10)
    assert r.values.coherence is False
    assert r.control.applied == 5


def test_channels_filter_bindings() -> None:
    r = Recorded()
    cc(r, 5, 127, channel=0)  # bound on channel 2 (mido channel 1)
    assert r.values.reactivity == LiveControls().reactivity
    cc(r, 5, 127, channel=1)
    assert r.values.reactivity == 2.0


def test_unmapped_messages_change_nothing() -> None:
    r = Recorded()
    cc(r, 99, 64)
    r.send("note_on", note=10, velocity=100)
    r.send("note_on", note=60, velocity=0)  # a note off in disguise
    r.send("sysex", data=[1, 2, 3])
    assert r.changes == []


def test_soft_takeover_waits_for_the_knob_to_meet_the_value() -> None:
    r = Recorded()
    start = r.values.strength  # 0.5, knob position 63.5
    cc(r, 2, 127)  # the knob sits far from the value: nothing jumps
    cc(r, 2, 110)
    assert r.values.strength == start
    cc(r, 2, 40)  # crossed the value on the way down: picked up
    assert r.values.strength == pytest.approx(40 / 127, abs=1e-6)
    cc(r, 2, 30)
    assert r.values.strength == pytest.approx(30 / 127, abs=1e-6)
    # another surface moves the value: the knob must meet it again
    r.store.set("strength", 0.9, source="/hamba/strength")
    cc(r, 2, 35)
    assert r.values.strength == 0.9
    cc(r, 2, 114)  # 114/127 = 0.898: within a step of 0.9, picked up
    assert r.values.strength == pytest.approx(114 / 127, abs=1e-6)


def test_jump_takeover_applies_at_once() -> None:
    r = Recorded()
    cc(r, 1, 127)
    assert r.values.blend == 1.0


def test_pause_toggles_and_presets_cycle() -> None:
    r = Recorded()
    r.send("note_on", note=60, velocity=90)
    assert r.values.pause is True
    r.send("note_on", note=60, velocity=90)
    assert r.values.pause is False
    choices = preset_choices()
    assert r.values.preset == choices[0]
    r.send("note_on", note=61, velocity=1)
    assert r.values.preset == choices[1]
    r.send("note_on", note=62, velocity=1)
    r.send("note_on", note=62, velocity=1)
    assert r.values.preset == choices[-1]  # wraps around
    # a preset set from MIDI sets what it defines, as /hamba/preset does
    assert r.values.blend == pytest.approx(0.2)


def test_reseed_picks_a_seed_in_the_schema_range() -> None:
    r = Recorded()
    seeds = set()
    for _ in range(5):
        r.send("note_on", note=63, velocity=100)
        seeds.add(r.values.seed)
    argument = lookup("/hamba/seed").arguments[0]
    assert len(seeds) == 5
    assert all(argument.minimum <= s <= argument.maximum for s in seeds)  # type: ignore[operator]


def test_chroma_set_is_one_atomic_update() -> None:
    r = Recorded()
    r.send("note_on", note=64, velocity=100)
    assert r.values.chroma_prompts == tuple(SETS["ice"])
    assert r.changes == [frozenset({"chroma_prompts"})]


def test_program_change_selects_a_preset() -> None:
    r = Recorded()
    r.send("program_change", program=2)
    assert r.values.preset == preset_choices()[2]
    custom = Recorded(program={5: "balanced"})
    custom.send("program_change", program=5)
    assert custom.values.preset == "balanced"


def test_a_program_without_a_preset_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    r = Recorded()
    with caplog.at_level(logging.WARNING, logger="bridge.midi.control"):
        r.send("program_change", program=42)
    assert r.changes == []
    assert "MIDI program change 42" in caplog.text


def test_a_failing_update_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    r = Recorded()

    def refuse(_values: LiveControls, _changed: frozenset[str]) -> None:
        raise RuntimeError("a listener broke")

    r.store.subscribe(refuse)
    with caplog.at_level(logging.ERROR, logger="bridge.midi.control"):
        cc(r, 1, 127)  # must not raise into rtmidi's thread
        r.control.on_message(object())  # not even for garbage
    assert "a listener broke" in caplog.text


def test_learn_binds_the_next_cc() -> None:
    r = Recorded()
    learned: list[CcBinding] = []
    assert r.control.learn("similarity", learned.append) == "/hamba/similarity"
    assert r.control.learning == "/hamba/similarity"
    cc(r, 21, 10, channel=2)  # this move binds; it does not set a value
    assert r.values.similarity == LiveControls().similarity
    assert r.control.learning is None
    (binding,) = learned
    assert (binding.cc, binding.channel, binding.control) == (21, 3, "/hamba/similarity")
    assert binding in r.control.bindings
    # soft takeover: meet 0.98 (position ~124.5), then follow the knob
    cc(r, 21, 125, channel=2)
    cc(r, 21, 100, channel=2)
    assert r.values.similarity == pytest.approx(100 / 127, abs=1e-6)
    assert "cc = 21" in binding_toml(binding)
    assert "channel = 3" in binding_toml(binding)


def test_learn_replaces_an_existing_binding_of_that_cc() -> None:
    r = Recorded()
    r.control.learn("reactivity")
    cc(r, 1, 0)  # CC 1 drove blend
    assert [b.control for b in r.control.bindings if b.cc == 1] == ["/hamba/reactivity"]


def test_learn_refuses_what_a_knob_cannot_drive_and_cancels() -> None:
    r = Recorded()
    with pytest.raises(ControlError, match="unknown control 'blnd'"):
        r.control.learn("blnd")
    with pytest.raises(ControlError, match="not a numeric"):
        r.control.learn("/hamba/prompt")
    r.control.learn("blend")
    r.control.learn("")
    assert r.control.learning is None
    cc(r, 1, 127)
    assert r.values.blend == 1.0  # CC 1 still drives blend
