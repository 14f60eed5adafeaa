"""The control page, built from the schema when it is served: no hand-kept list of controls.

Every writable control address of :data:`osc_schema.schema.SCHEMA` becomes a widget chosen by
its arguments (a float with a range: a slider; an integer or an open float: a number field; a
boolean: a toggle; a string with choices: a row of buttons; a free string: a text area; the
items of a tuple control: one widget per item), and every readable outgoing address becomes a
meter (a 0..1 float: a bar; several: a bar chart; the beat: a flash; the rest: a readout). An
address added to the schema appears on the page without touching this module.

The markup carries what the script needs (``data-osc``, ``data-tags``, ``data-kind``, ranges) and
``static/app.js`` does the rest: it LISTENs to every readable address over the OSCQuery
WebSocket and sends OSC binary back. No build step: plain HTML, CSS and JavaScript.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from engine.audio.types import PITCH_CLASSES
from osc_schema.layouts import widget_default, widget_kind
from osc_schema.schema import BEAT, CHROMA, SCHEMA, OscAddress

# how the items of a tuple (or the arguments of a multi-value meter) are named on the page
ITEM_LABELS: dict[str, Sequence[str]] = {"chroma_prompts": PITCH_CLASSES, CHROMA: PITCH_CLASSES}
# units as a person reads them
UNIT_TEXT = {"time.bpm": "BPM", "time.hz": "fps"}
# widgets in the order a thumb wants them: quick ones first, long texts last
_ORDER = ("choices", "toggle", "slider", "number", "text", "items")
SLIDER_STEPS = 1000


@dataclass(frozen=True)
class Widget:
    """One control on the page: its kind, the address it sends to and what it shows."""

    kind: str
    entry: OscAddress
    label: str
    items: tuple[OscAddress, ...] = ()


def _label(entry: OscAddress) -> str:
    if entry.control is not None:
        return entry.control.replace("_", " ")
    return entry.address.rsplit("/", 1)[-1].replace("_", " ")


def control_widgets(schema: Iterable[OscAddress] = SCHEMA) -> list[Widget]:
    """One widget per writable control of the schema (a tuple control: one with its items)."""
    entries = [e for e in schema if e.direction == "in" and e.writable and e.control is not None]
    widgets: list[Widget] = []
    for entry in entries:
        if entry.index is not None:
            continue  # shown inside its tuple's widget
        items = tuple(e for e in entries if e.control == entry.control and e.index is not None)
        if items:
            widgets.append(Widget("items", entry, _label(entry), items))
        elif len(entry.arguments) == 1:
            widgets.append(Widget(widget_kind(entry.arguments[0]), entry, _label(entry)))
        else:
            raise TypeError(f"{entry.address}: no page widget for {entry.type_tags!r}")
    return sorted(widgets, key=lambda w: _ORDER.index(w.kind))


def meter_widgets(schema: Iterable[OscAddress] = SCHEMA) -> list[Widget]:
    """One meter per readable outgoing address."""
    meters = []
    for entry in schema:
        if entry.direction != "out" or not entry.readable:
            continue
        fractions = all(
            a.tag == "f" and a.minimum == 0.0 and a.maximum == 1.0 for a in entry.arguments
        )
        if entry.address == BEAT:
            kind = "flash"
        elif fractions and len(entry.arguments) > 1:
            kind = "bars"
        elif fractions:
            kind = "bar"
        else:
            kind = "readout"
        meters.append(Widget(kind, entry, _label(entry)))
    return meters


def listened_addresses(schema: Iterable[OscAddress] = SCHEMA) -> list[str]:
    """Every readable address the page LISTENs to (controls and meters)."""
    return [e.address for e in schema if e.readable]


# -- markup -------------------------------------------------------------------------------------


def _attrs(**values: Any) -> str:
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        parts.append(f'{name.replace("_", "-")}="{html.escape(str(value), quote=True)}"')
    return " ".join(parts)


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _head(widget: Widget) -> str:
    entry = widget.entry
    unit = UNIT_TEXT.get(entry.unit, entry.unit)
    return (
        f'<div class="head"><label for="{_id(entry)}">{html.escape(widget.label)}</label>'
        f'<output class="value" {_attrs(data_unit=unit or None)}></output></div>'
        f'<p class="help">{html.escape(entry.description)}</p>'
    )


def _id(entry: OscAddress) -> str:
    return "w" + entry.address.replace("/", "-")


def _input(entry: OscAddress, kind: str) -> str:
    argument = entry.arguments[0]
    common = {"id": _id(entry), "data_osc": entry.address, "data_tags": entry.type_tags}
    default = widget_default(entry)
    if kind == "slider":
        low, high = float(argument.minimum or 0.0), float(argument.maximum or 1.0)
        return (
            f'<input type="range" {_attrs(**common, min=_number(low), max=_number(high))}'
            f" {_attrs(step=_number((high - low) / SLIDER_STEPS), value=_number(default))}>"
        )
    if kind == "number":
        step = "1" if argument.tag == "i" else "any"
        return (
            f'<input type="number" inputmode="decimal" {_attrs(**common, step=step)}'
            f" {_attrs(min=_number(argument.minimum), max=_number(argument.maximum))}"
            f" {_attrs(value=_number(default))}>"
        )
    if kind == "toggle":
        checked = " checked" if default else ""
        return f'<input type="checkbox" role="switch" {_attrs(**common)}{checked}>'
    if kind == "choices":
        buttons = "".join(
            f'<button type="button" {_attrs(data_value=choice)}>{html.escape(choice)}</button>'
            for choice in argument.choices
        )
        return f'<div class="choices" {_attrs(**common)}>{buttons}</div>'
    if kind == "text":
        return (
            f'<textarea rows="2" {_attrs(**common, maxlength=argument.max_length)}>'
            f"{html.escape(str(default or ''))}</textarea>"
        )
    raise TypeError(f"{entry.address}: unknown widget kind {kind!r}")


def _control(widget: Widget) -> str:
    entry = widget.entry
    if widget.kind != "items":
        return (
            f'<section class="control {widget.kind}" {_attrs(data_kind=widget.kind)}>'
            f"{_head(widget)}{_input(entry, widget.kind)}</section>"
        )
    names = ITEM_LABELS.get(entry.control or "", ())
    rows = []
    for item in widget.items:
        index = item.index if item.index is not None else 0
        name = names[index] if index < len(names) else str(index)
        kind = widget_kind(item.arguments[0])
        rows.append(
            f'<div class="item {kind}"><label for="{_id(item)}">{html.escape(name)}</label>'
            f"{_input(item, kind)}</div>"
        )
    return (
        f'<section class="control items" {_attrs(data_kind="items", data_osc=entry.address)}>'
        f'<div class="head"><label>{html.escape(widget.label)}</label></div>'
        f'<p class="help">{html.escape(entry.description.split(";")[0])}</p>'
        f'<div class="item-list">{"".join(rows)}</div></section>'
    )


def _meter(widget: Widget) -> str:
    entry = widget.entry
    common = {
        "data_osc": entry.address,
        "data_kind": widget.kind,
        "data_tags": entry.type_tags,
        "title": entry.description,
    }
    unit = UNIT_TEXT.get(entry.unit, entry.unit)
    if unit == widget.label:
        unit = ""  # "fps 9.9", not "fps 9.9 fps"
    label = f'<span class="name">{html.escape(widget.label)}</span>'
    if widget.kind == "bars":
        names = ITEM_LABELS.get(entry.address, ())
        bars = "".join(
            f'<span class="bar" title="{html.escape(names[i] if i < len(names) else str(i))}">'
            "<i></i></span>"
            for i in range(len(entry.arguments))
        )
        return f'<div class="meter bars" {_attrs(**common)}>{label}<div class="bars">{bars}</div></div>'
    if widget.kind == "bar":
        return (
            f'<div class="meter bar" {_attrs(**common)}>{label}'
            '<span class="bar"><i></i></span><output class="value"></output></div>'
        )
    if widget.kind == "flash":
        return (
            f'<div class="meter flash" {_attrs(**common, data_beats=0)}>{label}'
            '<span class="lamp"></span><output class="value"></output></div>'
        )
    return (
        f'<div class="meter readout" {_attrs(**common)}>{label}'
        f'<output class="value" {_attrs(data_unit=unit or None)}>–</output></div>'
    )


def render_page(*, name: str, token_required: bool, preview: bool = True) -> str:
    """The whole page for the daemon called ``name`` (its controls and meters from the schema)."""
    template = Template(resources.files("bridge.web").joinpath("static/index.html").read_text())
    config = {"listen": listened_addresses(), "tokenRequired": token_required}
    return template.substitute(
        title=html.escape(name),
        preview=(
            '<img id="preview" src="preview.mjpeg" alt="live preview of the output">'
            if preview
            else ""
        ),
        meters="".join(_meter(w) for w in meter_widgets()),
        controls="".join(_control(w) for w in control_widgets()),
        config=html.escape(json.dumps(config), quote=True),
    )


def render_token_page(*, name: str, wrong: bool) -> str:
    """The page shown instead of the controls when the control token is missing or wrong."""
    template = Template(resources.files("bridge.web").joinpath("static/token.html").read_text())
    note = "That token is not the one this show was started with." if wrong else ""
    return template.substitute(title=html.escape(name), note=html.escape(note))
