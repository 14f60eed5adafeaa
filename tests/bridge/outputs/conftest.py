"""Fixtures for the output tests: NDI pointed at loopback (NOTES.md), shared frame patterns."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def ndi_loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """NDI finds sources over loopback instead of mDNS (which does not run here).

    NDI reads this when the process creates its first NDI object, so it is set for the whole
    session before any output test runs.
    """
    folder = tmp_path_factory.mktemp("ndi")
    config = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}
    (folder / "ndi-config.v1.json").write_text(json.dumps(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NDI_CONFIG_DIR", os.fspath(folder))
        yield os.fspath(folder)
