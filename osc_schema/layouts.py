"""Controller layouts made from the schema: an Open Stage Control session and a TouchOSC layout.

Each has one widget per address a controller uses: the writable controls (a fader per float
with its range, a number input or fader per integer, a toggle per boolean, a switch or buttons
per choice, a text field per string), the engine's outgoing values as displays, and a button each
for ``/hamba/subscribe`` and ``/hamba/unsubscribe`` that sends the controller's own feedback port.
Ranges and defaults come from the schema. The ``(index, item)`` form of a tuple control
(``/hamba/prompt/chroma i s``) is left out: its items have their own addresses, and widgets.

- Open Stage Control (1.x): a session file, JSON (``{"type": "session", "content": root}``),
  written against the widget properties of its source (fader, button, switch, input, textarea,
  text, plot); load it with *Load session*. Widgets send to the server's default targets: start
  it with ``--send HOST:9000``.
- TouchOSC (2.x, ``.tosc``): zlib-compressed XML (``<lexml version='3'>``), nodes with
  properties, values and OSC messages (path and argument partials, scaled to the schema's
  ranges). TouchOSC is closed source: the structure follows files the editor writes; the layout
  is checked here for structure (every address, its range and default), not opened in TouchOSC.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable
from typing import Any, Literal

from osc_schema.schema import SCHEMA, SUBSCRIBE, UNSUBSCRIBE, OscAddress, OscArgument

OPEN_STAGE_CONTROL_VERSION = "1.26.2"
"""The Open Stage Control version the session is written for (older 1.x load it too)."""
OPEN_STAGE_CONTROL_PORT = 8080
"""Open Stage Control's default port, where it also hears OSC: what its subscribe button sends."""
TOUCHOSC_RECEIVE_PORT = 9000
"""TouchOSC's default receive port: what its subscribe button sends (change it to yours)."""
_UUID_ROOT = uuid.UUID("6d3b8f0e-4a52-4c8e-9f1a-2b7f0d1c9e55")  # ids stay the same run to run


def layout_entries(schema: Iterable[OscAddress] = SCHEMA) -> list[OscAddress]:
    """The addresses a layout has a widget for (all but the ``(index, item)`` tuple setters)."""
    entries = list(schema)
    itemised = {e.control for e in entries if e.index is not None}
    return [
        e
        for e in entries
        if not (e.direction == "in" and e.control in itemised and e.index is None)
    ]


def _page(entry: OscAddress) -> str:
    if entry.direction == "out" or entry.control is None:
        return "meters"
    if entry.arguments[0].tag == "s" and not entry.arguments[0].choices:
        return "prompts"
    return "play"


def _label(entry: OscAddress) -> str:
    return entry.address.removeprefix("/hamba/")


WidgetKind = Literal["toggle", "choices", "text", "slider", "number"]


def widget_kind(argument: OscArgument) -> WidgetKind:
    """The widget for an incoming argument, alike on the control page and in the layouts: a
    boolean a toggle, a string with choices a row of buttons, a free string a text field, a
    float with both bounds a slider, any other number a number field."""
    if argument.tag == "T":
        return "toggle"
    if argument.tag == "s":
        return "choices" if argument.choices else "text"
    if argument.tag == "f" and argument.minimum is not None and argument.maximum is not None:
        return "slider"
    return "number"


def widget_default(entry: OscAddress) -> Any:
    """The value a widget starts at: the default of the address's first argument (or None)."""
    return entry.default[0] if entry.default else None


def _normalised(argument: OscArgument, value: Any) -> float:
    low, high = argument.minimum or 0.0, argument.maximum or 1.0
    return 0.0 if high == low else (float(value) - low) / (high - low)


# -- Open Stage Control --------------------------------------------------------------------------


def _osc_widget(entry: OscAddress, reply_port: int) -> dict[str, Any]:
    first = entry.arguments[0] if entry.arguments else None
    widget: dict[str, Any] = {
        "id": entry.address.strip("/").replace("/", "_"),
        "address": entry.address,
        "preArgs": "",
        "target": "",
        "comments": entry.description,
    }
    default = widget_default(entry)
    if entry.address in (SUBSCRIBE, UNSUBSCRIBE):
        return {
            **widget,
            "type": "button",
            "mode": "tap",
            "label": f"{_label(entry)} (port {reply_port})",
            "on": reply_port,
            "off": reply_port,
            "typeTags": "i",
        }
    if entry.direction == "out":
        if (
            first is not None
            and len(entry.arguments) > 1
            and all(a.tag == "f" for a in entry.arguments)
        ):
            return {
                **widget,
                "type": "plot",
                "html": _label(entry),
                "bars": True,
                "rangeY": {"min": first.minimum or 0.0, "max": first.maximum or 1.0},
            }
        if first is not None and first.tag == "f" and first.maximum is not None:
            return {
                **widget,
                "type": "fader",
                "html": _label(entry),
                "interaction": False,
                "design": "compact",
                "horizontal": True,
                "range": {"min": first.minimum or 0.0, "max": first.maximum},
            }
        return {**widget, "type": "text", "html": _label(entry), "value": ""}
    assert first is not None
    kind = widget_kind(first)
    if kind == "toggle":
        return {
            **widget,
            "type": "button",
            "mode": "toggle",
            "label": _label(entry),
            "on": 1,
            "off": 0,
            "typeTags": "i",
            "default": int(bool(default)),
        }
    if kind == "choices":
        return {
            **widget,
            "type": "switch",
            "html": _label(entry),
            "layout": "horizontal",
            "values": list(first.choices),
            "typeTags": "s",
            "default": default,
        }
    if kind == "text":
        return {
            **widget,
            "type": "textarea",
            "html": _label(entry),
            "typeTags": "s",
            "default": default or "",
        }
    if kind == "slider":
        return {
            **widget,
            "type": "fader",
            "html": _label(entry),
            "horizontal": True,
            "range": {"min": first.minimum, "max": first.maximum},
            "typeTags": "f",
            "decimals": 3,
            "default": default,
        }
    return {
        **widget,
        "type": "input",
        "html": _label(entry),
        "numeric": True,
        "typeTags": first.tag,
        "decimals": 0 if first.tag == "i" else 3,
        "default": default,
    }


def open_stage_control_session(reply_port: int = OPEN_STAGE_CONTROL_PORT) -> dict[str, Any]:
    """The Open Stage Control session: tabs ``play``, ``prompts``, ``meters``, a widget each."""
    tabs: dict[str, list[dict[str, Any]]] = {"play": [], "prompts": [], "meters": []}
    for entry in layout_entries():
        tabs[_page(entry)].append(_osc_widget(entry, reply_port))
    return {
        "createdWith": "hambaMetal",
        "version": OPEN_STAGE_CONTROL_VERSION,
        "type": "session",
        "content": {
            "type": "root",
            "id": "root",
            "tabs": [
                {
                    "type": "tab",
                    "id": f"tab_{name}",
                    "label": name,
                    "layout": "vertical",
                    "widgets": widgets,
                }
                for name, widgets in tabs.items()
            ],
        },
    }


# -- TouchOSC ------------------------------------------------------------------------------------

_WIDTH, _HEIGHT, _MARGIN, _ROW = 1024, 1366, 16, 64
_CONVERSION = {"f": "FLOAT", "i": "INTEGER", "s": "STRING", "T": "BOOLEAN"}


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def _property(props: ET.Element, kind: str, key: str, value: Any) -> None:
    prop = _sub(props, "property")
    prop.set("type", kind)
    _sub(prop, "key", key)
    holder = _sub(prop, "value")
    if kind == "r":
        for name, number in zip("xywh", value, strict=True):
            _sub(holder, name, number)
    elif kind == "c":
        for name, number in zip("rgba", value, strict=True):
            _sub(holder, name, number)
    else:
        holder.text = str(int(value) if isinstance(value, bool) else value)


def _value(node: ET.Element, key: str, default: Any) -> None:
    values = node.find("values")
    assert values is not None
    holder = _sub(values, "value")
    _sub(holder, "key", key)
    _sub(holder, "locked", 0)
    _sub(holder, "lockedDefaultCurrent", 0)
    _sub(holder, "default", default)
    _sub(holder, "defaultPull", 0)


def _partial(
    parent: ET.Element, kind: str, conversion: str, value: Any, low: float = 0.0, high: float = 1.0
) -> None:
    partial = _sub(parent, "partial")
    _sub(partial, "type", kind)
    _sub(partial, "conversion", conversion)
    _sub(partial, "value", value)
    _sub(partial, "scaleMin", low)
    _sub(partial, "scaleMax", high)


def _message(
    node: ET.Element,
    address: str,
    *,
    send: bool,
    receive: bool,
    trigger: str,
    arguments: list[tuple[str, str, Any, float, float]],
) -> None:
    messages = node.find("messages")
    assert messages is not None
    message = _sub(messages, "osc")
    for key, flag in (("enabled", True), ("send", send), ("receive", receive)):
        _sub(message, key, int(flag))
    _sub(message, "feedback", 0)
    _sub(message, "noDuplicates", 0)
    _sub(message, "connections", "00001")
    triggers = _sub(message, "triggers")
    if send:
        trig = _sub(triggers, "trigger")
        _sub(trig, "var", trigger)
        _sub(trig, "condition", "RISE" if trigger == "touch" else "ANY")
    path = _sub(message, "path")
    _partial(path, "CONSTANT", "STRING", address)
    args = _sub(message, "arguments")
    for arg in arguments:
        _partial(args, *arg)


def _node(
    parent: ET.Element, kind: str, name: str, frame: tuple[int, int, int, int], **props: Any
) -> ET.Element:
    node = _sub(parent, "node")
    node.set("ID", str(uuid.uuid5(_UUID_ROOT, f"{name}/{kind}/{frame}")))
    node.set("type", kind)
    properties = _sub(node, "properties")
    _property(properties, "s", "name", name)
    _property(properties, "r", "frame", frame)
    _property(properties, "c", "color", props.pop("color", (0.31, 0.82, 0.77, 1.0)))
    for key, value in props.items():
        kind_tag = "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "s"
        _property(properties, kind_tag, key, value)
    _sub(node, "values")
    _sub(node, "messages")
    _sub(node, "children")
    return node


def _children(
    parent: ET.Element, kind: str, name: str, frame: tuple[int, int, int, int], **props: Any
) -> ET.Element:
    """A new node's ``children``: where a group's or a pager's nodes go."""
    children = _node(parent, kind, name, frame, **props).find("children")
    assert children is not None
    return children


def _button(
    parent: ET.Element,
    name: str,
    frame: tuple[int, int, int, int],
    address: str,
    argument: tuple[str, Any],
) -> None:
    """A push button that sends ``address`` with one constant (conversion, value) argument."""
    node = _node(parent, "BUTTON", name, frame, buttonType=0)
    _value(node, "x", 0)
    conversion, value = argument
    _message(
        node,
        address,
        send=True,
        receive=False,
        trigger="x",
        arguments=[("CONSTANT", conversion, value, 0, 1)],
    )


def _touchosc_control(parent: ET.Element, entry: OscAddress, y: int, reply_port: int) -> None:
    frame = (_MARGIN, y, _WIDTH - 2 * _MARGIN, _ROW - 8)
    first = entry.arguments[0] if entry.arguments else None
    default = widget_default(entry)
    out = entry.direction == "out"
    if entry.address in (SUBSCRIBE, UNSUBSCRIBE):
        _button(parent, entry.address, frame, entry.address, ("INTEGER", reply_port))
    elif first is not None and first.tag == "s" and first.choices and not out:
        children = _children(parent, "GROUP", entry.address, frame)
        width = frame[2] // len(first.choices)
        for i, choice in enumerate(first.choices):
            button_frame = (i * width, 0, width - 8, frame[3])
            _button(children, choice, button_frame, entry.address, ("STRING", choice))
    elif len(entry.arguments) > 1 and all(a.tag == "f" for a in entry.arguments):
        children = _children(parent, "GROUP", entry.address, frame)
        width = frame[2] // len(entry.arguments)
        for i, argument in enumerate(entry.arguments):
            fader = _node(
                children,
                "FADER",
                argument.name,
                (i * width, 0, width - 4, frame[3]),
                interactive=False,
            )
            _value(fader, "x", 0)
            arguments = [
                (
                    "VALUE" if j == i else "CONSTANT",
                    "FLOAT",
                    "x" if j == i else 0,
                    a.minimum or 0.0,
                    a.maximum or 1.0,
                )
                for j, a in enumerate(entry.arguments)
            ]
            _message(
                fader, entry.address, send=False, receive=True, trigger="x", arguments=arguments
            )
    elif first is not None and first.tag in "fi" and first.maximum is not None:
        low, high = first.minimum or 0.0, first.maximum
        node = _node(parent, "FADER", entry.address, frame, orientation=1, interactive=not out)
        _value(node, "x", round(_normalised(first, default or low), 6))
        _message(
            node,
            entry.address,
            send=not out,
            receive=True,
            trigger="x",
            arguments=[("VALUE", _CONVERSION[first.tag], "x", low, high)],
        )
    elif first is not None and first.tag == "T":
        node = _node(parent, "BUTTON", entry.address, frame, buttonType=1)
        _value(node, "x", int(bool(default)))
        _message(
            node,
            entry.address,
            send=True,
            receive=True,
            trigger="x",
            arguments=[("VALUE", "BOOLEAN", "x", 0, 1)],
        )
    else:
        # strings and open numbers: TouchOSC has no text entry, so a label shows the value
        node = _node(parent, "LABEL", entry.address, frame, interactive=False)
        _value(node, "text", default if default is not None else "")
        _message(
            node,
            entry.address,
            send=False,
            receive=True,
            trigger="text",
            arguments=[("VALUE", "STRING", "text", 0, 1)],
        )


def touchosc_document(reply_port: int = TOUCHOSC_RECEIVE_PORT) -> ET.Element:
    """The TouchOSC layout as an XML tree: a pager with pages ``play``, ``prompts``, ``meters``."""
    root = ET.Element("lexml")
    root.set("version", "3")
    top = _children(
        root, "GROUP", "hambaMetal", (0, 0, _WIDTH, _HEIGHT), color=(0.05, 0.06, 0.07, 1.0)
    )
    pages = _children(top, "PAGER", "pages", (0, 0, _WIDTH, _HEIGHT))
    by_page: dict[str, list[OscAddress]] = {"play": [], "prompts": [], "meters": []}
    for entry in layout_entries():
        by_page[_page(entry)].append(entry)
    for name, entries in by_page.items():
        controls = _children(pages, "GROUP", name, (0, 60, _WIDTH, _HEIGHT - 60))
        row = max(24, min(_ROW, (_HEIGHT - 60 - _MARGIN) // max(1, len(entries))))
        for i, entry in enumerate(entries):
            _touchosc_control(controls, entry, _MARGIN + i * row, reply_port)
    return root


def touchosc_bytes(reply_port: int = TOUCHOSC_RECEIVE_PORT) -> bytes:
    """The ``.tosc`` file: the XML, zlib-compressed."""
    body = ET.tostring(touchosc_document(reply_port), encoding="utf-8", xml_declaration=True)
    return zlib.compress(body, 9)
