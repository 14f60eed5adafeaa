"""Run the `hamba` command as a real subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# the built-in model at its smallest useful size: fast enough for every cli test
TINY_64 = ("--model", "tiny", "--width", "64", "--height", "64")


def env_without(tmp: Path, module: str, error: str) -> dict[str, str]:
    """Environment in which ``import module`` raises ``error`` (Python source, e.g.
    ``OSError('PortAudio library not found')``), as it does where that package or the system
    library under it is missing: a module of that name first on ``PYTHONPATH``."""
    shim = tmp / f"without-{module}"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / f"{module}.py").write_text(f"raise {error}\n")
    paths = [str(shim), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def hamba_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_hamba(
    args: Sequence[str], *, timeout: float = 180, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hamba_command(*args),
        cwd=REPO,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_hamba(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        hamba_command(*args), cwd=REPO, env=cli_env(env), stdout=handle, stderr=subprocess.STDOUT
    )
