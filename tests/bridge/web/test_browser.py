"""A real browser on the control page of a running daemon (tiny model, click track).

Debian's chromium, headless, driven by Playwright pointed at the system browser (nothing
downloads a browser). The page is checked as a VJ would use it: every writable control is there,
the blend slider moves ``/hamba/blend`` (read back over OSCQuery and heard by a UDP feedback
listener), an OSC message moves the slider, the preview changes, the beat lamp flashes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osc_schema.schema import SCHEMA
from tests.bridge.daemon_harness import DaemonUnderTest, FeedbackListener, start_daemon, wait_for
from tests.engine.audio.signals import click_track, tones, write_audio
from tests.requirements import missing_python_package, missing_system_package

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.slow


def _browser_or_skip() -> Any:
    """Playwright's sync API with the system chromium; skip (never under CI) when absent."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_python_package("playwright is not installed (no browser download)", "playwright")
    if not os.path.exists(CHROMIUM):
        missing_system_package(f"not installed: chromium (no {CHROMIUM})", "chromium")
    return sync_playwright


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sr = 22050
    samples, _ = click_track(120, 60.0, sr, offset=0.0)
    drone = tones([220.0], 60.0, sr, amplitude=0.05)
    return write_audio(tmp_path_factory.mktemp("clicks") / "click120.wav", samples + drone, sr)


@pytest.fixture
def daemon(tmp_path: Path, clicks: Path) -> Iterator[tuple[DaemonUnderTest, FeedbackListener]]:
    feedback = FeedbackListener()
    running = start_daemon(
        tmp_path,
        ["--audio", str(clicks), "--loop"],
        name=f"web{os.getpid()}",
        fps=10.0,
        feedback_port=feedback.port,
    )
    try:
        wait_for(
            lambda: running.value("/hamba/seed") == 42 if _up(running) else None,
            120,
            "OSCQuery",
            running.proc,
            running.log,
        )
        yield running, feedback
    finally:
        code = running.stop()
        feedback.close()
    assert code == 0
    assert "Traceback" not in running.log.read_text()


def _up(daemon: DaemonUnderTest) -> bool:
    try:
        daemon.value("/hamba/seed")
    except OSError:
        return False
    return True


def _heard(feedback: FeedbackListener, address: str, value: float) -> bool:
    feedback.drain()
    return any(abs(args[0] - value) < 1e-6 for args in feedback.messages.get(address, []))


def test_the_control_page_steers_and_follows_a_running_daemon(
    daemon: tuple[DaemonUnderTest, FeedbackListener], tmp_path: Path
) -> None:
    sync_playwright = _browser_or_skip()
    running, feedback = daemon
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{running.oscquery_port}/ui/")
            page.wait_for_selector("body[data-connected=true]", timeout=15_000)

            # every writable control of the schema is on the page
            on_page = set(
                page.eval_on_selector_all("[data-osc]", "es => es.map(e => e.dataset.osc)")
            )
            writable = {
                e.address for e in SCHEMA if e.direction == "in" and e.writable and e.control
            }
            assert writable <= on_page, writable - on_page

            # the slider moves the engine: OSCQuery reads it back, the feedback listener hears it
            page.locator("input[data-osc='/hamba/blend']").fill("0.8")
            running.wait_value("/hamba/blend", 0.8)
            wait_for(lambda: _heard(feedback, "/hamba/blend", 0.8), 5, "blend echoed to feedback")

            # an OSC message from a controller moves the slider
            slider = page.locator("input[data-osc='/hamba/blend']")
            sent = time.monotonic()
            running.osc.send_message("/hamba/blend", 0.15)
            slider.evaluate(
                "e => new Promise(r => { const t = () => e.value === '0.15' ? r() : requestAnimationFrame(t); t(); })"
            )
            latency_ms = (time.monotonic() - sent) * 1000
            print(f"OSC to slider: {latency_ms:.0f} ms")

            # the preview shows different frames; the beat lamp flashes on the clicks
            preview = page.locator("#preview")
            page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
            shots = [preview.screenshot()]
            for _ in range(10):
                time.sleep(0.3)
                shots.append(preview.screenshot())
                if len(set(shots)) >= 2:
                    break
            assert len(set(shots)) >= 2, "the preview never changed"
            page.wait_for_function(
                "Number(document.querySelector('.meter.flash').dataset.beats) >= 2",
                timeout=10_000,
            )

            # a bad value typed into a number field answers with the error on the page
            page.locator("input[data-osc='/hamba/seed']").evaluate(
                "e => { e.min = ''; e.max = ''; e.value = '-5'; e.dispatchEvent(new Event('change')); }"
            )
            page.wait_for_function(
                "document.querySelector(\"[data-osc='/hamba/error'] .value\").textContent.includes('/hamba/seed')"
            )
            assert running.value("/hamba/seed") == 42
            page.screenshot(path=str(tmp_path / "control-room.png"))
            assert not errors, errors
        finally:
            browser.close()
