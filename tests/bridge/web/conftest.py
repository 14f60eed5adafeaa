"""A control store for the web tests (the OSC package's fixtures live next to its tests)."""

from __future__ import annotations

import pytest

from engine.controls import ControlStore


@pytest.fixture
def store() -> ControlStore:
    return ControlStore()
