"""`hamba bench`: run the benchmark scripts of a source checkout and record their results."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import ConfigError

# name -> module in benchmarks/; each has main(argv) -> int and writes benchmarks/results/*.json
BENCHMARKS: dict[str, str] = {
    "audio": "benchmarks.bench_audio",
    "latent": "benchmarks.bench_latent_prompt",
    "engine": "benchmarks.bench_engine",
    "outputs": "benchmarks.bench_outputs",
    "osc": "benchmarks.bench_osc",
    "web": "benchmarks.bench_web",
    "sync": "benchmarks.bench_sync",
    "gpu": "benchmarks.bench_gpu",
    "e2e": "benchmarks.bench_e2e",
    "loop": "benchmarks.bench_loop",
    "cluster": "benchmarks.bench_cluster",
    "models": "benchmarks.bench_models",
}


def _checkout_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks").is_dir():
        raise ConfigError(
            f"benchmarks/ not found next to {root}: run hamba bench from a source checkout"
        )
    return root


def run_benchmarks(names: Sequence[str] = ()) -> int:
    """Run the named benchmarks (all by default); returns the worst exit code."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(
            f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}"
        )
    root = str(_checkout_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    worst = 0
    for name in names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        worst = max(worst, int(module.main([])))
    return worst
