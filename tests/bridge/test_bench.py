"""The `hamba bench` registry: every name leads to a benchmark script with a main()."""

from __future__ import annotations

import importlib
import inspect

import pytest

from bridge.bench import BENCHMARKS, run_benchmarks
from engine.errors import ConfigError


def test_every_registered_benchmark_is_a_script_with_main() -> None:
    assert {"engine", "gpu", "e2e", "loop"} <= set(BENCHMARKS)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        assert list(inspect.signature(module.main).parameters) == ["argv"], name
        assert module.__doc__, name


def test_an_unknown_benchmark_is_named_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"warp-drive.*e2e"):
        run_benchmarks(["warp-drive"])
