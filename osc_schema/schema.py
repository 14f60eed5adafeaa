"""The OSC address space: every address, derived from :class:`LiveControls` and declared outputs.

Incoming control addresses come from the fields of :class:`~osc_schema.controls.LiveControls`
(their type, range or choices, default, unit, access and description); the few addresses that
are not controls (subscriptions) and everything the engine sends are declared here once. The
server's validation, the OSCQuery namespace, the README table and the JSON export all read
:data:`SCHEMA`; nothing else lists the addresses.

Type tags: ``f`` float, ``i`` integer, ``s`` string, ``T`` boolean (``T`` or ``F`` on the wire).
What a controller may send, beyond the exact tag:

- a float argument accepts an integer (``i``, ``h``) and a double (``d``); floats are kept to
  float32 precision (7 significant digits), so 0.3 sent as ``f`` reads back as 0.3;
- an integer argument accepts a float or double that is a whole number (``42.0``, not ``42.5``);
- a boolean argument accepts ``T``/``F``, and the numbers 0 and 1 as ``i`` or ``f`` (the values
  buttons and toggles of TouchOSC or Open Stage Control send);
- a string argument accepts only a string.

Anything else (wrong type, wrong number of arguments, out of range, unknown address) raises
:class:`OscSchemaError` naming the address.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic.fields import FieldInfo

from osc_schema.controls import LiveControls

NAMESPACE = "/hamba"

# addresses the server handles itself (not controls) and the ones the engine sends
SUBSCRIBE = "/hamba/subscribe"
UNSUBSCRIBE = "/hamba/unsubscribe"
BEAT = "/hamba/audio/beat"
ENERGY = "/hamba/audio/energy"
TEMPO = "/hamba/audio/tempo"
CHROMA = "/hamba/audio/chroma"
FPS = "/hamba/status/fps"
FRAME = "/hamba/status/frame"
DROPS = "/hamba/status/drops"
STATUS_ERROR = "/hamba/status/error"
ERROR = "/hamba/error"
BEAT_SOURCE_STATUS = "/hamba/status/beat_source"
LINK_PEERS = "/hamba/link/peers"
LINK_TEMPO = "/hamba/link/tempo"
LINK_PHASE = "/hamba/link/phase"
MIDI_LEARN = "/hamba/midi/learn"
MIDI_LEARNED = "/hamba/midi/learned"

Direction = Literal["in", "out"]
Access = Literal["r", "w", "rw"]
Tag = Literal["f", "i", "s", "T"]

# how an argument python-osc decoded is named in error messages
_TAG_NAMES: dict[str, str] = {"f": "a float", "i": "an integer", "s": "a string", "T": "T/F"}
# integers above this do not survive the trip through a float
_EXACT_FLOAT_INT = 2**53


class OscSchemaError(ValueError):
    """An OSC message or schema export is invalid; names its culprit (address or file).

    The bridge maps it to :class:`engine.errors.ControlError` (``osc_schema`` cannot import the
    engine).
    """

    def __init__(self, culprit: str, reason: str) -> None:
        super().__init__(f"{culprit}: {reason}")
        self.culprit = culprit
        self.reason = reason


@dataclass(frozen=True)
class OscArgument:
    """One argument of an OSC message: its tag and what values it may take."""

    name: str
    tag: Tag
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None

    def coerce(self, value: Any) -> Any:
        """The value as this argument's Python type; ValueError says why it does not fit."""
        if self.tag == "s":
            result: Any = _as_string(value)
        elif self.tag == "T":
            result = _as_bool(value)
        elif self.tag == "i":
            result = _as_int(value)
        else:
            result = _as_float(value)
        self._check_range(result)
        return result

    def _check_range(self, value: Any) -> None:
        if isinstance(value, str):
            if self.choices and value not in self.choices:
                raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
            if self.max_length is not None and len(value) > self.max_length:
                raise ValueError(f"is {len(value)} characters long, at most {self.max_length}")
            return
        if isinstance(value, bool):
            return
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{value!r} is below the minimum {_number(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{value!r} is above the maximum {_number(self.maximum)}")


@dataclass(frozen=True)
class OscAddress:
    """One OSC address: its arguments, direction, access and meaning.

    ``control`` names the :class:`LiveControls` field a message sets (None for addresses that
    are not controls); ``index`` picks one item of a tuple control (a per-item address).
    ``access`` is ``r`` (the value may be read: OSCQuery VALUE, feedback), ``w`` (it may be
    set) or ``rw``.
    """

    address: str
    arguments: tuple[OscArgument, ...]
    direction: Direction
    access: Access
    description: str
    unit: str = ""
    default: tuple[Any, ...] | None = None
    control: str | None = None
    index: int | None = None

    @property
    def type_tags(self) -> str:
        """The OSC type tag string without the comma, e.g. ``"f"`` or ``"is"``."""
        return "".join(argument.tag for argument in self.arguments)

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def writable(self) -> bool:
        return "w" in self.access


# -- deriving the control addresses from LiveControls ---------------------------------------------


def _flatten(metadata: Iterable[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in metadata:
        if isinstance(item, annotated_types.GroupedMetadata):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def _argument(owner: str, name: str, annotation: Any, metadata: Iterable[Any]) -> OscArgument:
    """The OSC argument for one annotated type; TypeError when the schema cannot express it."""
    metadata = list(metadata)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata.extend(extra)
    limits: dict[str, Any] = {}
    for item in _flatten(metadata):
        if isinstance(item, annotated_types.Ge):
            limits["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            limits["maximum"] = item.le
        elif isinstance(item, annotated_types.MaxLen):
            limits["max_length"] = item.max_length
        else:
            raise TypeError(f"{owner}: constraint {item!r} has no OSC form (use ge/le/max_length)")
    if annotation is bool:
        return OscArgument(name, "T", **limits)
    if annotation is int:
        return OscArgument(name, "i", **limits)
    if annotation is float:
        return OscArgument(name, "f", **limits)
    if annotation is str:
        return OscArgument(name, "s", **limits)
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        if all(isinstance(choice, str) for choice in choices):
            return OscArgument(name, "s", choices=tuple(choices), **limits)
    raise TypeError(f"{owner}: type {annotation!r} has no OSC form")


def _osc_extra(name: str, field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    if not isinstance(extra, dict) or not isinstance(extra.get("osc"), str):
        raise TypeError(f"LiveControls.{name}: json_schema_extra needs an 'osc' address")
    return dict(extra)


def _control_addresses(name: str, field: FieldInfo) -> list[OscAddress]:
    extra = _osc_extra(name, field)
    address = str(extra["osc"])
    unit = str(extra.get("unit", ""))
    access: Access = extra.get("access", "rw")
    description = field.description or name
    owner = f"LiveControls.{name}"
    annotation = field.annotation
    if typing.get_origin(annotation) is not tuple:
        argument = _argument(owner, "value", annotation, field.metadata)
        return [
            OscAddress(
                address, (argument,), "in", access, description, unit, (field.default,), name
            )
        ]
    # a fixed-length tuple: one address taking (index, item) plus one address per item
    item_type, ellipsis = typing.get_args(annotation)
    default = field.default
    if ellipsis is not Ellipsis or not isinstance(default, tuple) or not default:
        raise TypeError(f"{owner}: only tuple[X, ...] with a non-empty default has an OSC form")
    if field.metadata:
        raise TypeError(f"{owner}: constraints on the tuple itself have no OSC form")
    item = _argument(owner, "value", item_type, ())
    index = OscArgument("index", "i", minimum=0, maximum=len(default) - 1)
    entries = [
        OscAddress(
            address,
            (index, item),
            "in",
            "w",
            f"{description}; sets item <index>",
            unit,
            None,
            name,
        )
    ]
    for i, value in enumerate(default):
        entries.append(
            OscAddress(
                f"{address}/{i}",
                (item,),
                "in",
                access,
                f"{description}; item {i}",
                unit,
                (value,),
                name,
                i,
            )
        )
    return entries


def _derived_controls() -> list[OscAddress]:
    entries: list[OscAddress] = []
    for name, field in LiveControls.model_fields.items():
        entries.extend(_control_addresses(name, field))
    return entries


# -- declared addresses (not controls) ------------------------------------------------------------

BEAT_SOURCES: tuple[str, ...] = tuple(
    choice
    for choice in typing.get_args(LiveControls.model_fields["beat_source"].annotation)
    if choice != "auto"
)
"""The beat sources that can drive the picture (``/hamba/beat_source`` less ``auto``)."""

_PORT = OscArgument("port", "i", minimum=1, maximum=65535)
_FRACTION = OscArgument("value", "f", minimum=0.0, maximum=1.0)

_DECLARED: tuple[OscAddress, ...] = (
    OscAddress(
        SUBSCRIBE,
        (_PORT,),
        "in",
        "w",
        "send the feedback stream (audio, status) to the sender's host at this UDP port",
    ),
    OscAddress(UNSUBSCRIBE, (_PORT,), "in", "w", "stop the feedback stream to the sender's port"),
    OscAddress(
        BEAT,
        (OscArgument("count", "i", minimum=0),),
        "out",
        "r",
        "beat count since the start, sent on the frame a beat falls in",
    ),
    OscAddress(ENERGY, (_FRACTION,), "out", "r", "loudness of the music at this frame, 0..1"),
    OscAddress(
        TEMPO, (OscArgument("value", "f", minimum=0.0),), "out", "r", "tempo", unit="time.bpm"
    ),
    OscAddress(
        CHROMA,
        tuple(OscArgument(f"pitch class {i}", "f", 0.0, 1.0) for i in range(12)),
        "out",
        "r",
        "weight of each pitch class at this frame, 0..1, C to B",
    ),
    OscAddress(
        FPS,
        (OscArgument("value", "f", minimum=0.0),),
        "out",
        "r",
        "frames published per second",
        unit="time.hz",
    ),
    OscAddress(
        FRAME, (OscArgument("index", "i", minimum=0),), "out", "r", "index of the frame published"
    ),
    OscAddress(
        DROPS,
        (OscArgument("count", "i", minimum=0),),
        "out",
        "r",
        "frames dropped since the start (rendering slower than the music)",
    ),
    OscAddress(
        STATUS_ERROR,
        (OscArgument("frame", "i", minimum=0), OscArgument("reason", "s")),
        "out",
        "r",
        "a frame failed and the last good one stays on screen, or the engine stepped down "
        "after running out of memory: the frame and why (at most every 5 s, every step-down)",
    ),
    OscAddress(
        ERROR,
        (OscArgument("address", "s"), OscArgument("reason", "s")),
        "out",
        "r",
        "a message was rejected: its address and why (sent back to its sender)",
    ),
    OscAddress(
        BEAT_SOURCE_STATUS,
        (OscArgument("source", "s", choices=BEAT_SOURCES),),
        "out",
        "r",
        "the beat source driving the picture now (see /hamba/beat_source)",
    ),
    OscAddress(
        LINK_PEERS,
        (OscArgument("count", "i", minimum=0),),
        "out",
        "r",
        "other peers in the Ableton Link session (sent while Link is on)",
    ),
    OscAddress(
        LINK_TEMPO,
        (OscArgument("value", "f", minimum=0.0),),
        "out",
        "r",
        "tempo of the Ableton Link session (sent while Link is on)",
        unit="time.bpm",
    ),
    OscAddress(
        LINK_PHASE,
        (OscArgument("beats", "f", minimum=0.0),),
        "out",
        "r",
        "beats into the Link bar, 0 up to the quantum (sent while Link is on)",
    ),
    OscAddress(
        MIDI_LEARN,
        (OscArgument("control", "s", max_length=200),),
        "in",
        "w",
        "bind the next MIDI CC moved to this numeric control (its address or name);"
        " an empty string cancels",
    ),
    OscAddress(
        MIDI_LEARNED,
        (
            OscArgument("address", "s"),
            OscArgument("channel", "i", minimum=1, maximum=16),
            OscArgument("cc", "i", minimum=0, maximum=127),
        ),
        "out",
        "r",
        "a MIDI learn bound this CC to this address (sent to the learn request's sender)",
    ),
)


def _build() -> tuple[OscAddress, ...]:
    entries = (*_derived_controls(), *_DECLARED)
    seen: set[str] = set()
    for entry in entries:
        if not entry.address.startswith(NAMESPACE + "/"):
            raise TypeError(f"{entry.address}: outside the {NAMESPACE} namespace")
        if entry.address in seen:
            raise TypeError(f"{entry.address}: declared twice")
        seen.add(entry.address)
    return entries


SCHEMA: tuple[OscAddress, ...] = _build()
"""Every address, controls first (in field order), then the declared ones."""

ADDRESSES: Mapping[str, OscAddress] = types.MappingProxyType({e.address: e for e in SCHEMA})
"""The schema by address."""

_DEFAULTS = LiveControls()


def lookup(address: str) -> OscAddress:
    """The schema entry for an address; OscSchemaError when there is none."""
    entry = ADDRESSES.get(address)
    if entry is None:
        raise OscSchemaError(address, "unknown address")
    return entry


def incoming() -> tuple[OscAddress, ...]:
    """The addresses controllers send to."""
    return tuple(e for e in SCHEMA if e.direction == "in")


def outgoing() -> tuple[OscAddress, ...]:
    """The addresses the engine sends."""
    return tuple(e for e in SCHEMA if e.direction == "out")


def control_addresses(control: str) -> tuple[OscAddress, ...]:
    """The readable addresses that show one control's value (one per item for a tuple)."""
    return tuple(e for e in SCHEMA if e.control == control and e.readable)


# -- parsing --------------------------------------------------------------------------------------


def parse_arguments(address: str, args: Sequence[Any]) -> tuple[Any, ...]:
    """Validate a message sent to an incoming address; the arguments as Python values.

    Raises :class:`OscSchemaError` naming the address for an unknown or outgoing address, the
    wrong number of arguments, a wrong type or a value out of range.
    """
    entry = lookup(address)
    if entry.direction != "in":
        raise OscSchemaError(address, "is sent by the engine, not received")
    expected = entry.arguments
    if len(args) != len(expected):
        plural = "" if len(expected) == 1 else "s"
        raise OscSchemaError(
            address,
            f"expects {len(expected)} argument{plural} ({entry.type_tags or 'none'}),"
            f" got {len(args)}",
        )
    values = []
    for argument, value in zip(expected, args, strict=True):
        try:
            values.append(argument.coerce(value))
        except ValueError as exc:
            label = "" if len(expected) == 1 else f"{argument.name}: "
            raise OscSchemaError(address, f"{label}{exc}") from None
    return tuple(values)


def parse_message(
    address: str, args: Sequence[Any], current: LiveControls | None = None
) -> dict[str, Any]:
    """The control changes one incoming message asks for, e.g. ``{"blend": 0.5}``.

    ``current`` is the state the change applies to; it matters only for per-item addresses
    (``/hamba/prompt/chroma``), whose change is the whole new tuple (default: the defaults).
    Raises :class:`OscSchemaError` naming the address (see :func:`parse_arguments`), also for
    addresses that are not controls (``/hamba/subscribe``: the server handles those).
    """
    values = parse_arguments(address, args)
    entry = ADDRESSES[address]
    control = entry.control
    if control is None:
        raise OscSchemaError(address, "is not a control")
    if entry.index is None and len(values) == 1:
        return {control: values[0]}
    # an item of a tuple control: the address names the index, or the message gives it first
    index, item = (entry.index, values[0]) if entry.index is not None else values
    items = list(getattr(current if current is not None else _DEFAULTS, control))
    items[index] = item
    return {control: tuple(items)}


def _arguments_of(entry: OscAddress, controls: LiveControls) -> tuple[Any, ...]:
    assert entry.control is not None
    value = getattr(controls, entry.control)
    return (value if entry.index is None else value[entry.index],)


def values_of(controls: LiveControls) -> dict[str, tuple[Any, ...]]:
    """The current arguments of every readable control address (OSCQuery VALUE, replies)."""
    return {
        entry.address: _arguments_of(entry, controls)
        for entry in SCHEMA
        if entry.control is not None and entry.readable
    }


def control_messages(
    controls: LiveControls, names: Iterable[str]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The (address, arguments) that show the named controls' values, in the order of
    ``names`` (what echoes a change or answers a preset); reads only those controls."""
    return [
        (entry.address, _arguments_of(entry, controls))
        for name in names
        for entry in control_addresses(name)
    ]


# -- coercion of decoded OSC values ---------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, bytes):
        return f"blob of {len(value)} bytes"
    if value is None:
        return "nil"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _wrong(tag: str, value: Any) -> ValueError:
    return ValueError(f"expects {_TAG_NAMES[tag]}, got {_describe(value)}")


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(value)


def _as_string(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong("s", value)
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise _wrong("T", value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong("i", value)
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise _wrong("i", value)
        return int(value)
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong("f", value)
    if isinstance(value, int) and abs(value) > _EXACT_FLOAT_INT:
        raise ValueError(f"integer {value} is too large for a float")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expects a finite number, got {number!r}")
    # float32 precision: what an OSC 'f' carries, without its binary noise (0.3, not 0.30000001)
    return float(f"{number:.7g}")
