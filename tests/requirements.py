"""System packages the tests need: skip naming what to install, or fail in CI, which has them all.

A developer's laptop may lack PortAudio, PulseAudio or liblo-tools: those tests skip and say
which Debian package brings the missing piece. Under CI (the ``CI`` environment variable set,
as CI services and ``.ci/run`` do) a missing system package is a failure, never a quiet skip:
``.ci/run`` installs every one of them. An optional Python package (an extra such as
``hambametal[link]``) follows the same rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_system_package(what: str, apt: str) -> NoReturn:
    """Skip the test (naming ``apt-get install APT``); under CI, fail it instead."""
    _skip_or_fail_in_ci(f"{what} (Debian/Ubuntu: apt-get install {apt})", "system package")


def missing_python_package(what: str, pip: str) -> NoReturn:
    """Skip the test (naming ``pip install PIP``); under CI, fail it instead."""
    _skip_or_fail_in_ci(f"{what} (pip install {pip})", "Python package")


def _skip_or_fail_in_ci(message: str, kind: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI must have every {kind} the tests use: {message}", pytrace=False)
    pytest.skip(message)


def require_commands(*names: str, apt: str) -> None:
    """The commands must be on PATH (``apt`` is the package that has them)."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        missing_system_package(f"not installed: {', '.join(missing)}", apt)


def require_portaudio() -> None:
    """PortAudio (the library under sounddevice) must load."""
    from engine.audio.live import list_input_devices
    from engine.errors import AudioError

    try:
        list_input_devices()
    except AudioError as exc:
        if "PortAudio" not in str(exc):
            raise
        problem = str(exc)
    else:
        return
    missing_system_package(f"PortAudio does not load: {problem}", "libportaudio2")


PRIVATE_NETWORK_SETUP = (
    "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
)


def in_private_network(command: Sequence[str]) -> list[str]:
    """``command`` run inside a network namespace of its own (loopback only, multicast on it).

    mDNS, NDI and Link discovery then stay on this machine whatever they announce. Needs root
    and ``unshare`` (util-linux) and ``ip`` (iproute2); the process of the returned command
    line is ``command`` itself (``exec``), so signals sent to it reach it directly.
    """
    require_commands("unshare", apt="util-linux")
    require_commands("ip", apt="iproute2")
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", PRIVATE_NETWORK_SETUP],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        missing_system_package(
            f"cannot make a private network namespace (root needed): {probe.stderr.strip()}",
            "util-linux iproute2",
        )
    return ["unshare", "-n", "sh", "-c", f'{PRIVATE_NETWORK_SETUP} && exec "$@"', "sh", *command]
