"""Run Link peers inside a private network namespace, so discovery never leaves this machine.

Link discovery multicasts on every interface. ``unshare -n`` gives the processes a network of
their own with only a loopback device; multicast needs that device up and a 224.0.0.0/4 route
on it. Every process of one Link test (the test's peer and the daemon) runs inside one such
namespace. Where ``unshare`` cannot make one (no root, no user namespaces, no ``ip``), the tests
skip naming what is missing; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

import pytest

from tests.bridge.cli_process import REPO, cli_env

NETNS_SETUP = "ip link set lo up && ip route add 224.0.0.0/4 dev lo"


@functools.cache
def netns_problem() -> str | None:
    """Why Link tests cannot run here, or None when they can."""
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is missing (Debian package {package})"
    try:
        import link  # noqa: F401
    except ImportError:
        return "LinkPython-extern is not installed (pip install 'hambametal[link]')"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", NETNS_SETUP],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if probe.returncode != 0:
        reason = probe.stderr.strip() or f"exit status {probe.returncode}"
        return f"'unshare -n' cannot make a network namespace here (needs root): {reason}"
    return None


def require_netns() -> None:
    """Skip (fail under CI=true) when no private network namespace can be made."""
    problem = netns_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Link tests must run in CI, but: {problem}")
    pytest.skip(f"Link tests need a private network namespace: {problem}")


def start_in_netns(args: Sequence[str]) -> subprocess.Popen[str]:
    """``python args...`` started inside a fresh network namespace (loopback up, multicast on
    it); stdout and stderr are pipes."""
    return subprocess.Popen(
        _command(args),
        cwd=REPO,
        env=cli_env({"PYTHONPATH": str(REPO)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_in_netns(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python args...`` run to its end inside a fresh network namespace."""
    return subprocess.run(
        _command(args),
        cwd=REPO,
        env=cli_env({"PYTHONPATH": str(REPO)}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _command(args: Sequence[str]) -> list[str]:
    return [
        "unshare",
        "-n",
        "sh",
        "-c",
        f'{NETNS_SETUP} && exec "$@"',
        "sh",
        sys.executable,
        *args,
    ]
