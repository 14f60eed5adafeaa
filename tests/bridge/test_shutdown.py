"""SIGTERM ends a real `hamba run` with NDI, shared memory and OSCQuery (mDNS on) in under 1 s.

The daemon runs in a private network namespace (loopback only, multicast routed there), so its
mDNS announcements and its NDI source stay on this machine while exercising the real thing:
zeroconf registers both services, and SIGTERM makes it send its goodbyes.

A time bound in a test, because the issue demands one (issue 11, item 10). Measured here
(2 shared cores, tiny model at 64x64): 0.4-0.6 s from SIGTERM to exit, of which the mDNS
goodbye is 0.25 s and the interpreter's exit 0.15-0.3 s; before the fix 2.1-2.4 s. The bound
leaves about half a second for a loaded machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.bridge.cli_process import REPO, TINY_64, cli_env, hamba_command
from tests.bridge.daemon_harness import wait_for
from tests.engine.audio.signals import tones, write_audio
from tests.requirements import in_private_network

SHUTDOWN_BOUND_S = 1.0


@pytest.mark.slow
def test_sigterm_with_ndi_and_oscquery_exits_cleanly_within_a_second(
    tmp_path: Path, ndi_loopback_env: dict[str, str]
) -> None:
    song = write_audio(tmp_path / "song.wav", tones([330.0], 4.0, 22050), 22050)
    name = f"sigterm{os.getpid()}"
    args = [
        "run", "--audio", str(song), "--loop", *TINY_64, "--fps", "15", "--name", name,
        "--output", "ndi", "--output", "shm", "--osc-host", "0.0.0.0", "--osc-port", "0",
        "--oscquery-port", "0", "--set", f'audio.cache_dir="{tmp_path / "cache"}"',
    ]  # fmt: skip
    log = tmp_path / "daemon.log"
    env = cli_env({**ndi_loopback_env, "TRANSFORMERS_VERBOSITY": "warning"})
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            in_private_network(hamba_command(*args)),
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=handle,
        )
    try:
        # frames flowing and the mDNS registration settled (advertised, or mDNS unavailable)
        wait_for(lambda: "outputs:" in log.read_text(), 120, "the outputs to open", proc, log)
        wait_for(
            lambda: "advertised" in log.read_text() or "not advertised" in log.read_text(),
            30,
            "the mDNS registration",
            proc,
            log,
        )
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"SIGTERM to exit: {took:.3f} s")
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert took < SHUTDOWN_BOUND_S, f"{took:.2f} s from SIGTERM to exit\n{text[-2000:]}"
    assert "received SIGTERM" in text
    assert f"ndi:{name}:" in text  # the closing line's counts
    assert "Traceback" not in text
    assert "left behind" not in text
    assert "torchvision" not in text  # transformers' noise about unused image processors
