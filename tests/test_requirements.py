"""A missing system package: the tests that need it skip naming the package, or fail under CI.

Runs pytest itself on the liblo and PortAudio tests in a machine made to lack them: liblo-tools
by a PATH without ``oscsend``/``oscdump``, PortAudio by a ``sounddevice`` that raises the
OSError the real one raises where libportaudio is missing. Nothing is uninstalled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge.cli_process import REPO, env_without
from tests.requirements import in_ci

NEEDS_LIBLO = "tests/bridge/osc/test_liblo.py::test_oscsend_over_udp_and_tcp"
NEEDS_PORTAUDIO = "tests/engine/audio/test_live.py::test_unknown_device_index"


def run_pytest(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_without(tmp_path, "sounddevice", "OSError('PortAudio library not found')"))
    env["PATH"] = str(tmp_path)  # no oscsend, no oscdump
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", NEEDS_LIBLO,
         NEEDS_PORTAUDIO],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip


def test_missing_system_packages_skip_naming_what_to_install(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 skipped" in result.stdout, result.stdout[-3000:]
    assert "apt-get install liblo-tools" in result.stdout
    assert "apt-get install libportaudio2" in result.stdout


def test_missing_system_packages_fail_under_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode != 0, result.stdout[-3000:]
    counts = [int(n) for n in re.findall(r"(\d+) (?:failed|errors?)\b", result.stdout)]
    assert sum(counts) == 2, result.stdout[-3000:]  # a fixture's failure is an error
    assert "skipped" not in result.stdout
    assert "liblo-tools" in result.stdout
    assert "libportaudio2" in result.stdout


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("", False), ("false", False), ("0", False)],
)
def test_what_counts_as_ci(value: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
