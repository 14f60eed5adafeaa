"""Run the daemon on the demo song and save a screenshot of its control page: docs/control-room.png.

Headless Debian chromium driven by Playwright (the system browser: nothing is downloaded). The
built-in `tiny` model is untrained: the preview shows abstract textures, not pictures.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    osc, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "run",
            "--audio",
            str(ROOT / "assets" / "demo.wav"),
            "--loop",
            "--model",
            "tiny",
            "--width",
            "256",
            "--height",
            "256",
            "--fps",
            "10",
            "--output",
            "shm",
            "--name",
            "demo",
            "--osc-host",
            "127.0.0.1",
            "--osc-port",
            str(osc),
            "--oscquery-port",
            str(http),
            "--duration",
            "120",
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("the daemon did not start") from None
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"http://127.0.0.1:{http}/ui/")
            page.wait_for_selector("body[data-connected=true]", timeout=15_000)
            time.sleep(4)  # a few beats, a moving preview
            out = ROOT / "docs" / "control-room.png"
            page.screenshot(path=str(out))
            browser.close()
        print(f"written to {out}")
    finally:
        daemon.terminate()
        daemon.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
