"""Live controls: validated, atomic, latest wins, presets set what they define."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from engine.config import PipelineConfig
from engine.controls import ControlStore, preset_controls
from engine.errors import ControlError


def test_update_is_validated_and_atomic() -> None:
    store = ControlStore()
    before = store.snapshot()
    with pytest.raises(ControlError, match="/hamba/blend"):
        store.update({"blend": 0.1, "strength": 3.0}, source="/hamba/blend")
    assert store.snapshot() is before  # nothing applied, not even the valid half


def test_unknown_control_named() -> None:
    with pytest.raises(ControlError, match="wobble"):
        ControlStore().set("wobble", 1)


def test_version_counts_and_snapshot_is_immutable() -> None:
    store = ControlStore()
    first = store.snapshot()
    store.set("prompt", "neon rain")
    second = store.snapshot()
    assert second.version == first.version + 1
    assert first.values.prompt != "neon rain"
    assert second.values.prompt == "neon rain"
    with pytest.raises(ValidationError, match="frozen"):
        second.values.blend = 0.9  # type: ignore[misc]


def test_preset_sets_its_values_and_explicit_values_win() -> None:
    store = ControlStore()
    values = store.set("preset", "quality")
    quality = PipelineConfig.quality_preset().stream
    assert values.blend == quality.temporal_blend_ratio
    assert values.similarity == quality.similarity_threshold
    values = store.update({"preset": "fast", "blend": 0.9})
    assert values.preset == "fast"
    assert values.blend == 0.9


def test_preset_controls_unknown() -> None:
    with pytest.raises(Exception, match="ultra"):
        preset_controls("ultra")
    with pytest.raises(ControlError, match="/hamba/preset"):
        ControlStore().set("preset", "ultra", source="/hamba/preset")


def test_listeners_see_changed_names() -> None:
    store = ControlStore()
    seen: list[frozenset[str]] = []
    store.subscribe(lambda values, changed: seen.append(changed))
    store.update({"blend": 0.3, "seed": 7})  # blend already 0.3
    assert seen == [frozenset({"seed"})]


def test_concurrent_writers_latest_wins_per_writer() -> None:
    store = ControlStore()

    def write(start: int) -> None:
        for i in range(500):
            store.set("seed", start + i)

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.snapshot().version == 2000
    assert store.values.seed in {499, 1499, 2499, 3499}
