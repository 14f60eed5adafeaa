"""Exports of the schema: JSON, Markdown, OSCQuery; the README and JSON docs must not drift."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from osc_schema.controls import LiveControls
from osc_schema.export import (
    README,
    SCHEMA_JSON,
    TABLE_END,
    TABLE_START,
    export_text,
    find_node,
    markdown_table,
    oscquery_namespace,
    render_readme,
    stale_docs,
    write_docs,
)
from osc_schema.schema import SCHEMA, OscSchemaError, values_of

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_and_json_export_match_the_schema() -> None:
    stale = stale_docs(ROOT)
    assert stale == [], f"regenerate with `python -m osc_schema`: {stale}"


def test_check_command_reports_drift(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / README, tmp_path / README)
    shutil.copy(ROOT / SCHEMA_JSON, tmp_path / SCHEMA_JSON)
    command = [sys.executable, "-m", "osc_schema", "--check", "--root", str(tmp_path)]
    clean = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (clean.returncode, clean.stdout) == (0, "")
    readme = tmp_path / README
    readme.write_text(readme.read_text().replace("`/hamba/blend`", "`/hamba/mix`"))
    drifted = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert drifted.returncode == 1
    assert drifted.stdout.strip() == f"{readme}: out of date"


def test_write_docs_fills_the_block_and_is_idempotent(tmp_path: Path) -> None:
    readme = tmp_path / README
    readme.write_text(f"# title\n\nbefore\n{TABLE_START}\nold table\n{TABLE_END}\nafter\n")
    assert sorted(write_docs(tmp_path)) == sorted([readme, tmp_path / SCHEMA_JSON])
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n")
    assert text.endswith(f"{TABLE_END}\nafter\n")
    assert "old table" not in text
    assert markdown_table() in text
    assert json.loads((tmp_path / SCHEMA_JSON).read_text()) == json.loads(export_text("json"))
    assert write_docs(tmp_path) == []


@pytest.mark.parametrize(
    "text", ["no markers at all", f"{TABLE_END}\nreversed\n{TABLE_START}", TABLE_START]
)
def test_readme_without_markers_is_an_error_naming_the_file(text: str) -> None:
    with pytest.raises(OscSchemaError, match=r"^docs/X\.md: needs the markers"):
        render_readme(text, source="docs/X.md")


def test_missing_readme_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(OscSchemaError, match=r"README\.md: cannot read"):
        stale_docs(tmp_path)


def test_markdown_names_every_address() -> None:
    table = markdown_table()
    for entry in SCHEMA:
        name = entry.address if entry.index is None else entry.address.rsplit("/", 1)[0] + "/0"
        assert f"`{name}`" in table, name
    assert "| `/hamba/blend` | `f` | 0.0 – 1.0 | 0.3 |  | rw |" in table


def test_json_export_lists_the_schema() -> None:
    data = json.loads(export_text("json"))
    assert data["namespace"] == "/hamba"
    assert [a["address"] for a in data["addresses"]] == [e.address for e in SCHEMA]
    blend = next(a for a in data["addresses"] if a["address"] == "/hamba/blend")
    assert blend == {
        "address": "/hamba/blend",
        "direction": "in",
        "type_tags": "f",
        "arguments": [{"name": "value", "tag": "f", "min": 0.0, "max": 1.0}],
        "access": "rw",
        "description": "temporal blend ratio: weight of the previous frame's latent",
        "unit": "",
        "default": [0.3],
        "control": "blend",
    }


def test_oscquery_export_and_lookup() -> None:
    tree = json.loads(export_text("oscquery"))
    assert tree == oscquery_namespace(values_of(LiveControls()))
    prompt = find_node(tree, "/hamba/prompt")
    assert prompt is not None
    assert prompt["TYPE"] == "s"
    assert "chroma" in prompt["CONTENTS"]  # a method with children
    assert find_node(tree, "/hamba/prompt/chroma/11") is not None
    assert find_node(tree, "/") == tree
    assert find_node(tree, "/hamba/missing") is None
    assert "VALUE" not in oscquery_namespace()["CONTENTS"]["hamba"]["CONTENTS"]["blend"]


def test_unknown_export_format() -> None:
    with pytest.raises(OscSchemaError, match="unknown export format 'yaml'"):
        export_text("yaml")
