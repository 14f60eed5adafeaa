"""A real PulseAudio null sink for live-capture tests (fixture registered in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requirements import require_commands


def _pulse_running() -> bool:
    probe = subprocess.run(["pactl", "info"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def pulse_sink() -> Iterator[str]:
    """The name of a fresh PulseAudio null sink; its monitor source hears what is played into it.

    Starts the PulseAudio daemon if none runs (and stops it afterwards). Skips only on a machine
    without PulseAudio and outside CI; in CI a missing PulseAudio is a failure
    (:mod:`tests.requirements`).
    """
    require_commands("pulseaudio", "pactl", "paplay", apt="pulseaudio pulseaudio-utils")
    started = False
    if not _pulse_running():
        subprocess.run(
            ["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True, timeout=30, check=True
        )
        started = True
        deadline = time.monotonic() + 15
        while not _pulse_running():
            if time.monotonic() > deadline:
                pytest.fail("the PulseAudio daemon did not come up within 15 s")
            time.sleep(0.1)
    name = f"hamba_test_{os.getpid()}"
    loaded = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={name}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    module = loaded.stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(
            ["pactl", "unload-module", module], capture_output=True, timeout=10, check=False
        )
        if started:
            subprocess.run(["pulseaudio", "-k"], capture_output=True, timeout=10, check=False)


def play_into_sink(sink: str, path: Path, *, loops: int = 1) -> subprocess.Popen[bytes]:
    """Start playing a file into the sink ``loops`` times in a row (the caller stops it)."""
    script = " && ".join(["paplay " + str(path)] * loops)
    env = dict(os.environ, PULSE_SINK=sink)
    return subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)
