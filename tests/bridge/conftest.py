"""Fixtures for the bridge tests that start a daemon in a process of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def ndi_loopback_env(tmp_path: Path) -> dict[str, str]:
    """The environment that points a daemon's NDI at loopback (NOTES.md): it announces and
    finds sources on 127.0.0.1 only (a private network namespace has nothing else)."""
    folder = tmp_path / "ndi"
    folder.mkdir()
    config = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}
    (folder / "ndi-config.v1.json").write_text(json.dumps(config))
    return {"NDI_CONFIG_DIR": str(folder)}
