"""Run Link peers inside a private network namespace, so discovery never leaves this machine.

Link discovery multicasts on every interface. :func:`tests.requirements.in_private_network`
gives the processes a network of their own with only a loopback device, multicast on and routed
there. Every process of one Link test (the test's peer and the daemon) runs inside one such
namespace. Where none can be made (no root, no ``unshare`` or ``ip``) or LinkPython-extern is
missing, the tests skip naming what is missing; under CI they fail instead.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from tests.bridge.cli_process import REPO, cli_env
from tests.requirements import in_private_network, missing_python_package


def require_link() -> None:
    """Skip (fail under CI) when LinkPython-extern does not import."""
    try:
        import link  # noqa: F401
    except ImportError:
        missing_python_package("LinkPython-extern is not installed", "'hambametal[link]'")


def start_in_netns(args: Sequence[str]) -> subprocess.Popen[str]:
    """``python args...`` started inside a fresh private network namespace; stdout and stderr
    are pipes."""
    return subprocess.Popen(
        in_private_network([sys.executable, *args]),
        cwd=REPO,
        env=cli_env({"PYTHONPATH": str(REPO)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_in_netns(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python args...`` run to its end inside a fresh private network namespace."""
    return subprocess.run(
        in_private_network([sys.executable, *args]),
        cwd=REPO,
        env=cli_env({"PYTHONPATH": str(REPO)}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
