"""The MIDI mapping: TOML in, checked against osc_schema, scaled to each control's range."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.midi.mapping import (
    CcBinding,
    MidiMap,
    load_midi_map,
    mappable_addresses,
    midi_map_from_data,
)
from engine.errors import ConfigError
from osc_schema.schema import SCHEMA, lookup
from tests.bridge.cli_process import REPO

EXAMPLE = REPO / "docs" / "midi-launch-control-xl.toml"


def test_the_shipped_example_loads() -> None:
    mapping = load_midi_map(EXAMPLE)
    assert mapping.input == "Launch Control XL"
    assert mapping.channel == 9
    assert {b.control for b in mapping.cc} >= {"/hamba/blend", "/hamba/strength"}
    assert {n.action for n in mapping.note} == {
        "pause",
        "previous_preset",
        "next_preset",
        "reseed",
        "chroma_set",
    }
    assert set(mapping.chroma_sets) == {"ice", "fire"}


def test_the_mappable_controls_come_from_the_schema() -> None:
    numeric = {
        e.address
        for e in SCHEMA
        if e.direction == "in"
        and e.control is not None
        and e.index is None
        and e.type_tags in ("f", "i", "T")
    }
    assert set(mappable_addresses()) == numeric
    assert "/hamba/prompt" not in mappable_addresses()  # strings are not for knobs


@pytest.mark.parametrize("address", mappable_addresses())
def test_cc_spans_each_controls_schema_range(address: str) -> None:
    binding = CcBinding(cc=1, control=address)
    argument = lookup(address).arguments[0]
    if argument.tag == "T":
        assert binding.value(0) is False
        assert binding.value(63) is False
        assert binding.value(64) is True
        assert binding.value(127) is True
        return
    assert binding.value(0) == argument.minimum
    assert binding.value(127) == argument.maximum
    middle = binding.value(64)
    assert argument.minimum < middle < argument.maximum
    if argument.tag == "i":
        assert isinstance(middle, int)
    assert binding.position(binding.value(64)) == pytest.approx(64, abs=0.5)


def test_names_and_addresses_both_work() -> None:
    assert CcBinding(cc=1, control="chroma_weight").control == "/hamba/prompt/chroma_weight"
    assert CcBinding(cc=1, control="/hamba/blend").control == "/hamba/blend"


def test_curve_and_sub_range() -> None:
    binding = CcBinding(cc=1, control="reactivity", curve=2.0, min=0.5, max=1.5)
    assert binding.value(0) == 0.5
    assert binding.value(127) == 1.5
    assert binding.value(64) == pytest.approx(0.5 + (64 / 127) ** 2)
    assert binding.position(0.5 + (64 / 127) ** 2) == pytest.approx(64)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[midi.cc]]\ncc = 1\ncontrol = "/hamba/blnd"', "unknown control '/hamba/blnd'"),
        ('[[midi.cc]]\ncc = 1\ncontrol = "prompt"', "not a numeric or on/off control"),
        ('[[midi.cc]]\ncc = 128\ncontrol = "blend"', "cc.0.cc: Input should be less than"),
        ('[[midi.cc]]\ncc = -1\ncontrol = "blend"', "cc.0.cc: Input should be greater"),
        ('[[midi.cc]]\ncc = 1\ncontrol = "blend"\nmax = 2.0', "outside /hamba/blend's range"),
        ('[[midi.cc]]\ncc = 1\ncontrol = "blend"\nchannel = 17', "cc.0.channel"),
        (
            '[[midi.cc]]\ncc = 1\ncontrol = "blend"\n[[midi.cc]]\ncc = 1\ncontrol = "strength"',
            "CC 1 is bound twice",
        ),
        ('[[midi.note]]\nnote = 3\naction = "explode"', "note.0.action"),
        ('[[midi.note]]\nnote = 3\naction = "chroma_set"', "needs set = NAME"),
        ('[[midi.note]]\nnote = 3\naction = "chroma_set"\nset = "x"', "unknown chroma set 'x'"),
        ('[midi.program]\n1 = "fastest"', "'fastest' is not one of fast, balanced, quality"),
        ('[midi.chroma_sets]\nx = ["a", "b"]', "needs 12 prompts"),
        ('beat_note = 3\noutput = "x"\nbogus = 1', "bogus: Extra inputs are not permitted"),
    ],
)
def test_bad_mappings_name_the_file_and_the_field(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, f'[midi]\ninput = "APC40"\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load_midi_map(path)
    message = str(info.value)
    assert str(path) in message, message
    assert expected in message, message


def test_malformed_toml_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"map.toml: not valid TOML"):
        load_midi_map(write(tmp_path, "[midi\ninput = "))
    with pytest.raises(ConfigError, match="config file not found"):
        load_midi_map(tmp_path / "absent.toml")


def test_ports_are_needed_and_an_output_needs_its_note() -> None:
    with pytest.raises(ConfigError, match="neither an input nor an output"):
        midi_map_from_data({}, source="x")
    with pytest.raises(ConfigError, match="output needs beat_note"):
        midi_map_from_data({"output": "APC40"}, source="x")
    assert isinstance(midi_map_from_data({"output": "APC40", "beat_note": 1}, source="x"), MidiMap)


def test_a_bare_table_at_top_level_is_a_map(tmp_path: Path) -> None:
    mapping = load_midi_map(write(tmp_path, 'input = "APC40"\n[[cc]]\ncc = 7\ncontrol = "blend"\n'))
    assert mapping.cc[0].cc == 7
