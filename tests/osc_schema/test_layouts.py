"""Controller layouts made from the schema: one widget per address, ranges and defaults from it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest

from osc_schema.export import export_bytes, export_text
from osc_schema.layouts import (
    OPEN_STAGE_CONTROL_PORT,
    TOUCHOSC_RECEIVE_PORT,
    layout_entries,
    touchosc_bytes,
)
from osc_schema.schema import ADDRESSES, SCHEMA, SUBSCRIBE, OscSchemaError
from tests.bridge.cli_process import run_hamba


def widgets_of(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for child in node.get("tabs", []) + node.get("widgets", []):
        if "address" in child:
            found.append(child)
        found.extend(widgets_of(child))
    return found


def test_layouts_cover_every_address_but_the_tuple_setter() -> None:
    covered = {e.address for e in layout_entries()}
    left_out = {e.address for e in SCHEMA} - covered
    # the (index, item) form: each item has its own address and widget
    assert left_out == {"/hamba/prompt/chroma"}
    assert {f"/hamba/prompt/chroma/{i}" for i in range(12)} <= covered


def test_open_stage_control_session_has_one_widget_per_address() -> None:
    session = json.loads(export_text("open-stage-control"))
    assert session["type"] == "session"
    assert session["content"]["type"] == "root"
    widgets = widgets_of(session["content"])
    addresses = [w["address"] for w in widgets]
    assert sorted(addresses) == sorted(e.address for e in layout_entries())
    assert len(set(w["id"] for w in widgets)) == len(widgets)
    by_address = {w["address"]: w for w in widgets}
    blend = by_address["/hamba/blend"]
    assert (blend["type"], blend["range"], blend["default"]) == (
        "fader",
        {"min": 0.0, "max": 1.0},
        0.3,
    )
    assert by_address["/hamba/reactivity"]["range"] == {"min": 0.0, "max": 2.0}
    assert by_address["/hamba/preset"]["values"] == ["fast", "balanced", "quality"]
    assert by_address["/hamba/seed"]["typeTags"] == "i"
    assert by_address["/hamba/pause"]["mode"] == "toggle"
    assert by_address["/hamba/prompt"]["default"] == ADDRESSES["/hamba/prompt"].default[0]  # type: ignore[index]
    assert by_address[SUBSCRIBE]["on"] == OPEN_STAGE_CONTROL_PORT
    assert by_address["/hamba/audio/chroma"]["type"] == "plot"
    for widget in widgets:
        entry = ADDRESSES[widget["address"]]
        if entry.direction == "in" and entry.control is not None:
            assert "default" in widget, widget["address"]


def _osc_messages(node: ET.Element) -> list[ET.Element]:
    return node.findall("./messages/osc")


def _name(node: ET.Element) -> str:
    value = node.find("./properties/property[key='name']/value")
    assert value is not None
    assert value.text is not None
    return value.text


def test_touchosc_layout_decompresses_to_xml_with_one_control_per_address() -> None:
    root = ET.fromstring(zlib.decompress(touchosc_bytes()))
    assert root.tag == "lexml"
    assert root.get("version") == "3"
    pages = root.findall("./node/children/node[@type='PAGER']/children/node")
    assert [_name(p) for p in pages] == ["play", "prompts", "meters"]
    controls = [c for page in pages for c in page.findall("./children/node")]
    names = [_name(c) for c in controls]
    assert sorted(names) == sorted(e.address for e in layout_entries())
    by_name = {_name(c): c for c in controls}
    ids = [n.get("ID") for n in root.iter("node")]
    assert len(ids) == len(set(ids))

    blend = by_name["/hamba/blend"]
    assert blend.get("type") == "FADER"
    (message,) = _osc_messages(blend)
    assert message.findtext("./path/partial/value") == "/hamba/blend"
    argument = message.find("./arguments/partial")
    assert argument is not None
    assert (
        argument.findtext("conversion"),
        argument.findtext("scaleMin"),
        argument.findtext("scaleMax"),
    ) == (
        "FLOAT",
        "0.0",
        "1.0",
    )
    assert blend.findtext("./values/value[key='x']/default") == "0.3"
    reactivity = by_name["/hamba/reactivity"]
    assert reactivity.findtext("./values/value[key='x']/default") == "0.5"  # 1.0 of 0..2

    preset = by_name["/hamba/preset"]
    sent = [b.findtext("./messages/osc/arguments/partial/value") for b in preset.iter("node")][1:]
    assert sent == ["fast", "balanced", "quality"]
    pause = by_name["/hamba/pause"]
    assert pause.findtext("./messages/osc/arguments/partial/conversion") == "BOOLEAN"
    subscribe = by_name[SUBSCRIBE]
    assert subscribe.findtext("./messages/osc/arguments/partial/value") == str(
        TOUCHOSC_RECEIVE_PORT
    )
    energy = by_name["/hamba/audio/energy"]
    assert energy.findtext("./messages/osc/send") == "0"  # a meter only receives


def test_cli_writes_both_layouts(tmp_path: Path) -> None:
    tosc, session = tmp_path / "hamba.tosc", tmp_path / "hamba.json"
    for fmt, out in (("touchosc", tosc), ("open-stage-control", session)):
        result = run_hamba(["osc-schema", "--format", fmt, "-o", str(out)], timeout=60)
        assert result.returncode == 0, result.stderr
    assert tosc.read_bytes() == export_bytes("touchosc")
    assert json.loads(session.read_text()) == json.loads(export_text("open-stage-control"))
    refused = run_hamba(["osc-schema", "--format", "touchosc"], timeout=60)
    assert refused.returncode == 2
    assert "-o FILE" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(OscSchemaError, match="touchosc"):
        export_text("lemur")
