"""The address space: its contract, its derivation from LiveControls, message parsing."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from osc_schema.controls import CHROMA_PROMPT_DEFAULTS, LiveControls
from osc_schema.schema import (
    ADDRESSES,
    SCHEMA,
    OscSchemaError,
    control_addresses,
    control_messages,
    incoming,
    lookup,
    outgoing,
    parse_arguments,
    parse_message,
    values_of,
)

# the addresses the issue names, with their type tags and direction
CONTRACT = [
    ("/hamba/prompt", "s", "in"),
    ("/hamba/negative_prompt", "s", "in"),
    ("/hamba/prompt/chroma", "is", "in"),
    ("/hamba/blend", "f", "in"),
    ("/hamba/preset", "s", "in"),
    ("/hamba/strength", "f", "in"),
    ("/hamba/seed", "i", "in"),
    ("/hamba/reactivity", "f", "in"),
    ("/hamba/similarity", "f", "in"),
    ("/hamba/coherence", "T", "in"),
    ("/hamba/pause", "T", "in"),
    ("/hamba/subscribe", "i", "in"),
    ("/hamba/audio/beat", "i", "out"),
    ("/hamba/audio/energy", "f", "out"),
    ("/hamba/audio/tempo", "f", "out"),
    ("/hamba/audio/chroma", "f" * 12, "out"),
    ("/hamba/status/fps", "f", "out"),
    ("/hamba/status/frame", "i", "out"),
    ("/hamba/error", "ss", "out"),
]


@pytest.mark.parametrize(("address", "tags", "direction"), CONTRACT)
def test_contract_addresses(address: str, tags: str, direction: str) -> None:
    entry = lookup(address)
    assert (entry.type_tags, entry.direction) == (tags, direction)


def test_every_control_has_an_address_and_every_address_a_real_control() -> None:
    controls = {e.control for e in SCHEMA if e.control is not None}
    assert controls == set(LiveControls.model_fields)
    for name, field in LiveControls.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        assert extra["osc"] in ADDRESSES
        assert control_addresses(name), name


def test_ranges_defaults_and_choices_come_from_the_model() -> None:
    blend = lookup("/hamba/blend")
    assert (blend.arguments[0].minimum, blend.arguments[0].maximum, blend.default) == (0, 1, (0.3,))
    assert lookup("/hamba/seed").arguments[0].maximum == 2**31 - 1
    assert lookup("/hamba/reactivity").arguments[0].maximum == 2.0
    assert lookup("/hamba/preset").arguments[0].choices == ("fast", "balanced", "quality")
    assert lookup("/hamba/prompt").arguments[0].max_length == 1000
    assert lookup("/hamba/pause").default == (False,)
    chroma = lookup("/hamba/prompt/chroma")
    assert (chroma.access, chroma.arguments[0].maximum) == ("w", 11)
    assert [lookup(f"/hamba/prompt/chroma/{i}").default for i in range(12)] == [
        (p,) for p in CHROMA_PROMPT_DEFAULTS
    ]


def test_directions_split_the_schema() -> None:
    assert set(incoming()) | set(outgoing()) == set(SCHEMA)
    assert all(e.access == "r" for e in outgoing())
    assert all(e.writable for e in incoming())


GOOD = [
    ("/hamba/blend", [0.5], {"blend": 0.5}),
    ("/hamba/blend", [1], {"blend": 1.0}),
    ("/hamba/blend", [0.30000001192092896], {"blend": 0.3}),
    ("/hamba/seed", [7], {"seed": 7}),
    ("/hamba/seed", [7.0], {"seed": 7}),
    ("/hamba/pause", [True], {"pause": True}),
    ("/hamba/pause", [1], {"pause": True}),
    ("/hamba/coherence", [0.0], {"coherence": False}),
    ("/hamba/preset", ["balanced"], {"preset": "balanced"}),
    ("/hamba/prompt", [""], {"prompt": ""}),
    ("/hamba/negative_prompt", ["blurry"], {"negative_prompt": "blurry"}),
]


@pytest.mark.parametrize(("address", "args", "changes"), GOOD)
def test_parse_message(address: str, args: list[Any], changes: dict[str, Any]) -> None:
    result = parse_message(address, args)
    assert result == changes
    assert [type(v) for v in result.values()] == [type(v) for v in changes.values()]


def test_per_item_addresses_change_one_item_of_the_current_tuple() -> None:
    current = LiveControls().model_copy(update={"chroma_prompts": ("x",) * 12})
    by_index = parse_message("/hamba/prompt/chroma", [2, "two"], current)
    by_path = parse_message("/hamba/prompt/chroma/11", ["eleven"], current)
    assert by_index == {"chroma_prompts": ("x", "x", "two", *("x",) * 9)}
    assert by_path == {"chroma_prompts": (*("x",) * 11, "eleven")}
    defaults = parse_message("/hamba/prompt/chroma/0", ["zero"])
    assert defaults == {"chroma_prompts": ("zero", *CHROMA_PROMPT_DEFAULTS[1:])}


BAD = [
    ("/hamba/nope", [1], "/hamba/nope: unknown address"),
    ("/hamba/audio/tempo", [120.0], "/hamba/audio/tempo: is sent by the engine, not received"),
    ("/hamba/blend", [math.nan], "/hamba/blend: expects a finite number, got nan"),
    ("/hamba/blend", [math.inf], "/hamba/blend: expects a finite number, got inf"),
    ("/hamba/blend", [True], "/hamba/blend: expects a float, got T"),
    ("/hamba/blend", [2**60], "/hamba/blend: integer 1152921504606846976 is too large for a float"),
    ("/hamba/seed", [2**31], "/hamba/seed: 2147483648 is above the maximum 2147483647"),
    ("/hamba/seed", [False], "/hamba/seed: expects an integer, got F"),
    ("/hamba/seed", [None], "/hamba/seed: expects an integer, got nil"),
    ("/hamba/pause", [0.5], "/hamba/pause: expects T/F, got float 0.5"),
    ("/hamba/prompt/chroma", [1], "/hamba/prompt/chroma: expects 2 arguments (is), got 1"),
    ("/hamba/subscribe", [9000], "/hamba/subscribe: is not a control"),
]


@pytest.mark.parametrize(("address", "args", "message"), BAD)
def test_parse_errors_name_the_address(address: str, args: list[Any], message: str) -> None:
    with pytest.raises(OscSchemaError) as caught:
        parse_message(address, args)
    assert str(caught.value) == message
    assert caught.value.culprit == address
    assert isinstance(caught.value, ValueError)


def test_parse_arguments_for_actions() -> None:
    assert parse_arguments("/hamba/subscribe", [9001]) == (9001,)
    with pytest.raises(OscSchemaError, match="above the maximum 65535"):
        parse_arguments("/hamba/subscribe", [65536])


def test_values_of_reads_every_readable_control_address() -> None:
    values = values_of(LiveControls())
    readable = {e.address for e in SCHEMA if e.control is not None and e.readable}
    assert set(values) == readable
    assert values["/hamba/blend"] == (0.3,)
    assert values["/hamba/prompt/chroma/5"] == (CHROMA_PROMPT_DEFAULTS[5],)
    assert "/hamba/prompt/chroma" not in values  # write-only


def test_control_messages_show_the_named_controls_in_their_order() -> None:
    controls = LiveControls(blend=0.5)
    messages = control_messages(controls, ["chroma_prompts", "blend"])
    values = values_of(controls)
    chroma = [f"/hamba/prompt/chroma/{i}" for i in range(len(CHROMA_PROMPT_DEFAULTS))]
    assert [address for address, _ in messages] == [*chroma, "/hamba/blend"]
    assert all(values[address] == arguments for address, arguments in messages)
    assert messages[-1] == ("/hamba/blend", (0.5,))
    assert control_messages(controls, []) == []


NUMERIC = [e for e in incoming() if e.control and e.type_tags in ("f", "i")]


@settings(max_examples=200, deadline=None)
@given(
    entry=st.sampled_from(NUMERIC),
    value=st.one_of(st.floats(), st.integers(min_value=-(2**40), max_value=2**40)),
)
def test_schema_and_model_agree(entry: Any, value: float) -> None:
    """The schema accepts exactly what the model accepts (after float32 rounding)."""
    try:
        changes = parse_message(entry.address, [value])
    except OscSchemaError:
        accepted = False
    else:
        accepted = True
        LiveControls.model_validate({**LiveControls().model_dump(), **changes})
    if not accepted:
        # what the model sees of an OSC float: float32 precision, as the schema keeps it
        probe = (
            float(f"{value:.7g}") if isinstance(value, float) and math.isfinite(value) else value
        )
        with pytest.raises(ValidationError):
            LiveControls.model_validate({entry.control: probe})


def test_importing_the_schema_pulls_in_neither_torch_nor_engine_nor_bridge() -> None:
    code = (
        "import sys, osc_schema.schema, osc_schema.export, osc_schema.__main__\n"
        "heavy = sorted(m for m in ('torch', 'engine', 'bridge', 'diffusers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
