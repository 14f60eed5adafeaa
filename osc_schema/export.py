"""Exports of the OSC schema: JSON, a Markdown table, the OSCQuery namespace; docs upkeep.

Everything here reads :data:`osc_schema.schema.SCHEMA`. :func:`write_docs` rewrites the README's
table (between ``<!-- osc-table:start -->`` and ``<!-- osc-table:end -->``) and
``docs/osc-schema.json``; :func:`stale_docs` says which of them no longer match the schema
(``python -m osc_schema --check`` fails on it, and so does a test).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from osc_schema.schema import NAMESPACE, SCHEMA, OscAddress, OscArgument, OscSchemaError

TABLE_START = "<!-- osc-table:start -->"
TABLE_END = "<!-- osc-table:end -->"
README = Path("README.md")
SCHEMA_JSON = Path("docs/osc-schema.json")

Format = Literal["json", "markdown", "oscquery", "open-stage-control", "touchosc"]
FORMATS: tuple[str, ...] = ("json", "markdown", "oscquery", "open-stage-control", "touchosc")
BINARY_FORMATS = frozenset({"touchosc"})
"""Formats whose export is bytes, not text (see :func:`export_bytes`)."""

# OSCQuery ACCESS: 0 no value, 1 read only, 2 write only, 3 both
_ACCESS = {"r": 1, "w": 2, "rw": 3}
# descriptions of the containers that only group addresses
_CONTAINERS = {
    "/": "hambaMetal: music-reactive diffusion visuals",
    NAMESPACE: "live controls (in) and music analysis, status and errors (out)",
    f"{NAMESPACE}/audio": "music analysis, sent every frame to feedback targets",
    f"{NAMESPACE}/status": "engine status, sent every frame to feedback targets",
    f"{NAMESPACE}/link": "Ableton Link session state, sent every frame while Link is on",
    f"{NAMESPACE}/midi": "MIDI learn",
}


# -- JSON -----------------------------------------------------------------------------------------


def _argument_dict(argument: OscArgument) -> dict[str, Any]:
    data: dict[str, Any] = {"name": argument.name, "tag": argument.tag}
    if argument.minimum is not None:
        data["min"] = argument.minimum
    if argument.maximum is not None:
        data["max"] = argument.maximum
    if argument.choices:
        data["choices"] = list(argument.choices)
    if argument.max_length is not None:
        data["max_length"] = argument.max_length
    return data


def schema_dict() -> dict[str, Any]:
    """The whole address space as plain data (what ``docs/osc-schema.json`` holds)."""
    addresses = []
    for entry in SCHEMA:
        data: dict[str, Any] = {
            "address": entry.address,
            "direction": entry.direction,
            "type_tags": entry.type_tags,
            "arguments": [_argument_dict(a) for a in entry.arguments],
            "access": entry.access,
            "description": entry.description,
            "unit": entry.unit,
            "default": list(entry.default) if entry.default is not None else None,
        }
        if entry.control is not None:
            data["control"] = entry.control
        if entry.index is not None:
            data["index"] = entry.index
        addresses.append(data)
    return {"namespace": NAMESPACE, "addresses": addresses}


# -- Markdown -------------------------------------------------------------------------------------

_TABLE_INTRO = """\
Transports: UDP, and TCP when enabled (SLIP or length-prefixed framing). Type tags: `f` float,
`i` integer, `s` string, `T` boolean (`T`/`F`, or 0/1 as `i` or `f`, as buttons send them). A
float also takes an integer, an integer a whole float (`42.0`). Access `r` means the value can
be read (OSCQuery `VALUE`, feedback), `w` that it can be set; a preset replies with the values
it set."""

_HEADER = "| Address | Types | Range | Default | Unit | Access | Description |\n"
_RULE = "|---|---|---|---|---|---|---|\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, str):
        short = value if len(value) <= 32 else value[:29] + "..."
        return f'"{short}"'
    return repr(value)


def _range_text(argument: OscArgument) -> str:
    if argument.choices:
        return ", ".join(argument.choices)
    if argument.max_length is not None:
        return f"≤ {argument.max_length} chars"
    low = "" if argument.minimum is None else _shown(argument.minimum)
    high = "" if argument.maximum is None else _shown(argument.maximum)
    if not low and not high:
        return ""
    if not high:
        return f"≥ {low}"
    return f"{low} – {high}" if low else f"≤ {high}"


def _entry_range(entry: OscAddress) -> str:
    parts = [_range_text(a) for a in entry.arguments]
    if len(entry.arguments) > 1 and len(set(parts)) == 1:
        return f"each {parts[0]}" if parts[0] else ""
    if len(entry.arguments) > 1:
        return "; ".join(f"{a.name}: {p}" for a, p in zip(entry.arguments, parts, strict=True) if p)
    return parts[0] if parts else ""


def _row(address: str, entry: OscAddress, default: str, description: str) -> str:
    cells = [
        address,
        _code(entry.type_tags),
        _entry_range(entry),
        default,
        entry.unit,
        entry.access,
        description,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |\n"


def _rows(entries: Sequence[OscAddress]) -> str:
    rows = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        if entry.index is None:
            default = "" if entry.default is None else _shown(entry.default[0])
            if entry.default is not None and len(entry.default) > 1:
                default = ", ".join(_shown(v) for v in entry.default)
            rows.append(_row(_code(entry.address), entry, default, entry.description))
            i += 1
            continue
        # per-item addresses of one tuple control collapse into one row
        group = [entry]
        while i + len(group) < len(entries) and entries[i + len(group)].control == entry.control:
            group.append(entries[i + len(group)])
        base = entry.address.rsplit("/", 1)[0]
        address = f"`{base}/0` … `{base}/{len(group) - 1}`"
        description = entry.description.rsplit(";", 1)[0] + "; one address per item"
        rows.append(_row(address, entry, f"{len(group)} values (see JSON)", description))
        i += len(group)
    return "".join(rows)


def markdown_table() -> str:
    """The README's OSC section body: intro, incoming table, outgoing table."""
    incoming = [e for e in SCHEMA if e.direction == "in"]
    outgoing = [e for e in SCHEMA if e.direction == "out"]
    return (
        f"{_TABLE_INTRO}\n\n"
        f"**Incoming** (controller → engine)\n\n{_HEADER}{_RULE}{_rows(incoming)}\n"
        f"**Outgoing** (engine → feedback targets and `{NAMESPACE}/subscribe` clients)\n\n"
        f"{_HEADER}{_RULE}{_rows(outgoing)}"
    ).rstrip("\n")


# -- OSCQuery -------------------------------------------------------------------------------------


def _oscquery_range(argument: OscArgument) -> dict[str, Any] | None:
    if argument.choices:
        return {"VALS": list(argument.choices)}
    bounds: dict[str, Any] = {}
    if argument.minimum is not None:
        bounds["MIN"] = argument.minimum
    if argument.maximum is not None:
        bounds["MAX"] = argument.maximum
    return bounds or None


def _method(entry: OscAddress, values: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "FULL_PATH": entry.address,
        "DESCRIPTION": entry.description,
        "ACCESS": _ACCESS[entry.access],
    }
    if entry.type_tags:
        node["TYPE"] = entry.type_tags
    ranges = [_oscquery_range(a) for a in entry.arguments]
    if any(r is not None for r in ranges):
        node["RANGE"] = ranges
    if entry.unit:
        node["UNIT"] = [entry.unit] * len(entry.arguments)
    if entry.readable and entry.address in values:
        node["VALUE"] = list(values[entry.address])
    return node


def _container(path: str) -> dict[str, Any]:
    return {
        "FULL_PATH": path,
        "DESCRIPTION": _CONTAINERS.get(path, path.rsplit("/", 1)[-1]),
        "ACCESS": 0,
        "CONTENTS": {},
    }


def oscquery_namespace(values: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """The OSCQuery tree of the whole address space, rooted at ``/``.

    ``values`` maps addresses to their current arguments (see
    :func:`osc_schema.schema.values_of`); readable nodes with a value get ``VALUE``. A node that
    is a method and also has children (``/hamba/prompt``) carries both ``TYPE`` and ``CONTENTS``.
    """
    values = values or {}
    root = _container("/")
    for entry in SCHEMA:
        node = root
        path = ""
        for part in entry.address.strip("/").split("/"):
            path = f"{path}/{part}"
            node = node.setdefault("CONTENTS", {}).setdefault(part, _container(path))
        # a method without children has no CONTENTS; children may still arrive later
        if not node.get("CONTENTS"):
            node.pop("CONTENTS", None)
        node.update(_method(entry, values))
    return root


def find_node(namespace: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """The node at ``path`` in an OSCQuery tree (``/`` is the root); None when there is none."""
    node: Mapping[str, Any] = namespace
    for part in [p for p in path.split("/") if p]:
        contents = node.get("CONTENTS")
        if not isinstance(contents, Mapping) or part not in contents:
            return None
        node = contents[part]
    return dict(node)


# -- text and docs --------------------------------------------------------------------------------


def export_bytes(fmt: str) -> bytes:
    """Any export as the bytes of its file (text formats UTF-8 with a final newline)."""
    if fmt == "touchosc":
        from osc_schema.layouts import touchosc_bytes

        return touchosc_bytes()
    return (export_text(fmt) + "\n").encode("utf-8")


def export_text(fmt: str) -> str:
    """The schema as ``json``, ``markdown``, ``oscquery`` or ``open-stage-control`` text.

    No trailing newline; ``touchosc`` is binary (:func:`export_bytes`).
    """
    if fmt == "json":
        return json.dumps(schema_dict(), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return markdown_table()
    if fmt == "oscquery":
        from osc_schema.controls import LiveControls
        from osc_schema.schema import values_of

        return json.dumps(oscquery_namespace(values_of(LiveControls())), indent=2)
    if fmt == "open-stage-control":
        from osc_schema.layouts import open_stage_control_session

        return json.dumps(open_stage_control_session(), indent=2)
    if fmt in BINARY_FORMATS:
        raise OscSchemaError("format", f"{fmt!r} is a binary file: write it with -o FILE")
    raise OscSchemaError("format", f"unknown export format {fmt!r} ({', '.join(FORMATS)})")


def render_readme(text: str, *, source: str = str(README)) -> str:
    """``text`` with the block between the table markers replaced by :func:`markdown_table`."""
    start = text.find(TABLE_START)
    end = text.find(TABLE_END)
    if start < 0 or end < start:
        raise OscSchemaError(source, f"needs the markers {TABLE_START} and {TABLE_END}, in order")
    head = text[: start + len(TABLE_START)]
    return f"{head}\n{markdown_table()}\n{text[end:]}"


def _documents(root: Path) -> dict[Path, str]:
    readme = root / README
    try:
        current = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise OscSchemaError(str(readme), f"cannot read: {exc.strerror}") from None
    return {
        readme: render_readme(current, source=str(readme)),
        root / SCHEMA_JSON: export_text("json") + "\n",
    }


def stale_docs(root: Path) -> list[Path]:
    """The generated documents under ``root`` that differ from the schema (missing counts)."""
    stale = []
    for path, wanted in _documents(root).items():
        try:
            if path.read_text(encoding="utf-8") == wanted:
                continue
        except OSError:
            pass
        stale.append(path)
    return stale


def write_docs(root: Path) -> list[Path]:
    """Regenerate the README table and ``docs/osc-schema.json`` under ``root``; the changed ones."""
    changed = stale_docs(root)
    documents = _documents(root)
    for path in changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(documents[path], encoding="utf-8")
        except OSError as exc:
            raise OscSchemaError(str(path), f"cannot write: {exc.strerror}") from None
    return changed
