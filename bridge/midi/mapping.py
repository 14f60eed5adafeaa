"""The MIDI mapping: a ``[midi]`` TOML table (in ``--config`` or its own ``--midi-map FILE``).

Every control it names is checked against :mod:`osc_schema` (an address such as
``/hamba/blend`` or a control's name such as ``blend``); its range comes from there, never from
a list kept here. Example (a Novation Launch Control XL, factory template 1)::

    [midi]
    input = "Launch Control XL"     # the port, or any part of its name
    output = "Launch Control XL"    # optional: a note on each beat for the LEDs
    beat_note = 41
    channel = 9                     # default channel of the bindings (1-16; absent: any)
    clock = false                   # a MIDI clock on the input may drive the beat (auto)

    [[midi.cc]]
    cc = 77                         # fader 1
    control = "/hamba/blend"
    [[midi.cc]]
    cc = 78
    control = "strength"
    curve = 2.0                     # value = min + (max - min) * (cc / 127) ** curve
    takeover = "soft"               # "soft" (default): waits until the fader meets the value
    [[midi.cc]]
    cc = 13                         # send knob row 1, knob 1
    control = "reactivity"
    min = 0.5                       # a part of the schema's range (0 - 2)
    max = 1.5

    [[midi.note]]
    note = 41                       # track focus 1
    action = "pause"                # toggles
    [[midi.note]]
    note = 42
    action = "next_preset"          # next_preset, previous_preset, reseed, chroma_set
    [[midi.note]]
    note = 43
    action = "chroma_set"
    set = "ice"

    [midi.chroma_sets]
    ice = ["frozen lake", "glacier", ...]   # twelve prompts, C to B

    [midi.program]                  # program change -> preset (default: 0 fast, 1 balanced, ...)
    0 = "fast"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.config import format_validation_error, read_toml
from engine.errors import ConfigError
from osc_schema.controls import check_twelve_prompts
from osc_schema.schema import SCHEMA, OscAddress, OscSchemaError, lookup, parse_arguments

Trigger = Literal["pause", "next_preset", "previous_preset", "reseed", "chroma_set"]

CC_MAX = 127


# -- what a CC may reach ---------------------------------------------------------------------


def _mappable(entry: OscAddress) -> bool:
    if entry.direction != "in" or not entry.writable or entry.control is None:
        return False
    if entry.index is not None or len(entry.arguments) != 1:
        return False
    argument = entry.arguments[0]
    if argument.tag == "T":
        return True
    return (
        argument.tag in ("f", "i") and argument.minimum is not None and argument.maximum is not None
    )


def mappable_addresses() -> tuple[str, ...]:
    """The addresses a CC can drive: numeric controls with a range, and booleans (>= 64 on)."""
    return tuple(e.address for e in SCHEMA if _mappable(e))


def cc_target(control: str) -> OscAddress:
    """The schema entry a CC binding names (address or control name); ValueError if none."""
    entry: OscAddress | None = None
    if control.startswith("/"):
        try:
            entry = lookup(control)
        except OscSchemaError:
            entry = None
    else:
        entry = next((e for e in SCHEMA if e.control == control and e.index is None), None)
    if entry is None or not _mappable(entry):
        valid = ", ".join(mappable_addresses())
        kind = "unknown control" if entry is None else "not a numeric or on/off control"
        raise ValueError(f"{kind} {control!r} (a CC can drive: {valid})")
    return entry


def control_address(control: str) -> str:
    """The address of the (non-item) incoming entry of a LiveControls field."""
    for entry in SCHEMA:
        if entry.control == control and entry.index is None and entry.direction == "in":
            return entry.address
    raise KeyError(control)


def preset_choices() -> tuple[str, ...]:
    """The presets, in the schema's order (program change n selects the n-th)."""
    return lookup(control_address("preset")).arguments[0].choices


# -- the mapping -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Channel = Field(None, ge=1, le=16, description="MIDI channel 1-16 (absent: the [midi] default)")


class CcBinding(_Model):
    """A CC drives one control, scaled to its schema range (or ``min``..``max`` inside it)."""

    cc: int = Field(ge=0, le=CC_MAX, description="controller number 0-127")
    control: str = Field(description="the control's OSC address or name")
    channel: int | None = Channel
    curve: float = Field(1.0, gt=0, le=10, description="exponent: value ~ (cc / 127) ** curve")
    min: float | None = Field(None, description="value at CC 0 (default: the schema minimum)")
    max: float | None = Field(None, description="value at CC 127 (default: the schema maximum)")
    takeover: Literal["soft", "jump"] = Field(
        "soft", description="soft: wait until the knob meets the current value; jump: apply"
    )

    @field_validator("control")
    @classmethod
    def _known(cls, value: str) -> str:
        return cc_target(value).address

    @model_validator(mode="after")
    def _within_schema(self) -> CcBinding:
        argument = self.target.arguments[0]
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is None:
                continue
            if argument.tag == "T":
                raise ValueError(f"{name}: {self.control} is on/off and takes no range")
            assert argument.minimum is not None
            assert argument.maximum is not None
            if not argument.minimum <= value <= argument.maximum:
                raise ValueError(
                    f"{name} {value:g} lies outside {self.control}'s range"
                    f" {argument.minimum:g} - {argument.maximum:g}"
                )
        return self

    @property
    def target(self) -> OscAddress:
        """The schema entry this binding drives."""
        return lookup(self.control)

    @property
    def low(self) -> float:
        """The value at CC 0."""
        minimum = self.target.arguments[0].minimum
        return float(self.min if self.min is not None else minimum or 0.0)

    @property
    def high(self) -> float:
        """The value at CC 127."""
        maximum = self.target.arguments[0].maximum
        return float(self.max if self.max is not None else maximum or 1.0)

    def value(self, cc_value: int) -> Any:
        """The control value for a CC value 0-127 (rounded for integers; >= 64 is on)."""
        argument = self.target.arguments[0]
        if argument.tag == "T":
            return cc_value >= 64
        x = (min(max(cc_value, 0), CC_MAX) / CC_MAX) ** self.curve
        value = self.low + (self.high - self.low) * x
        return round(value) if argument.tag == "i" else value

    def position(self, value: Any) -> float:
        """Where (0-127) the knob would sit for a control value: the inverse of :meth:`value`."""
        if isinstance(value, bool):
            return float(CC_MAX) if value else 0.0
        span = self.high - self.low
        x = 0.0 if span == 0 else min(max((float(value) - self.low) / span, 0.0), 1.0)
        return float(x ** (1.0 / self.curve) * CC_MAX)


class NoteBinding(_Model):
    """A note (on, velocity > 0) fires a trigger."""

    note: int = Field(ge=0, le=CC_MAX, description="note number 0-127")
    action: Trigger = Field(description="pause, next_preset, previous_preset, reseed, chroma_set")
    channel: int | None = Channel
    set: str | None = Field(None, description="chroma_set: the name of a [midi.chroma_sets] set")

    @model_validator(mode="after")
    def _set_only_for_chroma(self) -> NoteBinding:
        if self.action == "chroma_set" and not self.set:
            raise ValueError("action chroma_set needs set = NAME (one of [midi.chroma_sets])")
        if self.action != "chroma_set" and self.set is not None:
            raise ValueError(f"set is only for action chroma_set, not {self.action}")
        return self


class MidiMap(_Model):
    """The whole ``[midi]`` table: ports, bindings, clock and beat notes."""

    input: str | None = Field(None, description="input port (its name or part of it)")
    output: str | None = Field(None, description="output port for the beat notes")
    channel: int | None = Field(None, ge=1, le=16, description="default channel of bindings")
    clock: bool = Field(False, description="a MIDI clock on the input drives the beat (auto)")
    cc: tuple[CcBinding, ...] = ()
    note: tuple[NoteBinding, ...] = ()
    program: dict[int, str] | None = Field(
        None, description="program number -> preset (default: the n-th preset)"
    )
    chroma_sets: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="named sets of twelve chroma prompts, C to B"
    )
    beat_note: int | None = Field(None, ge=0, le=CC_MAX, description="note sent on each beat")
    downbeat_note: int | None = Field(None, ge=0, le=CC_MAX, description="note on downbeats")
    beat_channel: int = Field(1, ge=1, le=16, description="channel of the beat notes")
    beat_velocity: int = Field(100, ge=1, le=CC_MAX, description="velocity of the beat notes")

    @field_validator("program")
    @classmethod
    def _presets(cls, value: dict[int, str] | None) -> dict[int, str] | None:
        if value is None:
            return None
        argument = lookup(control_address("preset")).arguments[0]
        for program, preset in value.items():
            if not 0 <= program <= CC_MAX:
                raise ValueError(f"program {program} is not 0-127")
            try:
                argument.coerce(preset)
            except ValueError as exc:
                raise ValueError(f"program {program}: {exc}") from None
        return value

    @field_validator("chroma_sets")
    @classmethod
    def _twelve_prompts(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        base = control_address("chroma_prompts")
        for name, prompts in value.items():
            try:
                check_twelve_prompts(prompts)
            except ValueError as exc:
                raise ValueError(f"set {name!r}: {exc}") from None
            for i, prompt in enumerate(prompts):
                try:
                    parse_arguments(f"{base}/{i}", [prompt])
                except OscSchemaError as exc:
                    raise ValueError(f"set {name!r}, prompt {i}: {exc.reason}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MidiMap:
        if self.input is None and self.output is None:
            raise ValueError("names neither an input nor an output port")
        seen: dict[tuple[int, int | None], str] = {}
        for binding in self.cc:
            key = (binding.cc, binding.channel or self.channel)
            if key in seen:
                raise ValueError(
                    f"CC {binding.cc} is bound twice ({seen[key]} and {binding.control})"
                )
            seen[key] = binding.control
        for trigger in self.note:
            if trigger.set is not None and trigger.set not in self.chroma_sets:
                known = ", ".join(self.chroma_sets) or "none"
                raise ValueError(
                    f"note {trigger.note}: unknown chroma set {trigger.set!r} ({known})"
                )
        if self.output is not None and self.beat_note is None:
            raise ValueError("output needs beat_note = NOTE (the note sent on each beat)")
        return self


def midi_map_from_data(data: Mapping[str, Any], *, source: str) -> MidiMap:
    """Validate a ``[midi]`` table; ConfigError naming ``source`` and the field."""
    try:
        return MidiMap.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: [midi] {format_validation_error(exc)}") from None


def load_midi_map(path: Path) -> MidiMap:
    """Read a mapping file: a ``[midi]`` table (or the bare table's keys at top level)."""
    data = read_toml(path)
    table = data.get("midi", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [midi] must be a table")
    return midi_map_from_data(table, source=str(path))
