"""`hamba run --link follow|lead|auto` against a real Ableton Link peer, inside `unshare -n`.

Each scenario (tests/bridge/link/scenario.py) runs in its own private network namespace: the
test's peer (LinkPython-extern) and a real daemon subprocess (tiny model, 64x64, 20 fps, a
120 BPM click track). The two namespaces run at once, so the module costs about one daemon
start. Link's auto mode is checked without a daemon (test_session.py).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.bridge.link.netns import require_link, start_in_netns

MODES = ("follow", "lead")


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    require_link()
    procs: dict[str, subprocess.Popen[str]] = {}
    for mode in MODES:
        folder = tmp_path_factory.mktemp(f"link-{mode}")
        procs[mode] = start_in_netns(["-m", "tests.bridge.link.scenario", mode, str(folder)])
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            lines = out.strip().splitlines()
            if proc.returncode != 0 or not lines:
                results[mode] = {"failed": f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"}
                continue
            results[mode] = json.loads(lines[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def result(scenarios: dict[str, dict[str, Any]], mode: str) -> dict[str, Any]:
    got = scenarios[mode]
    assert "failed" not in got, got.get("failed")
    assert got["exit_code"] == 0
    assert not got["traceback"]
    return got


def test_follow_takes_tempo_and_beat_from_the_session(scenarios: dict[str, Any]) -> None:
    r = result(scenarios, "follow")
    # the peer ran at 128 BPM before the daemon joined; the click track says 120
    assert r["lock_s"] < 2.0
    assert r["beat_source"] == "link"
    # every beat frame starts at most one frame before a beat of the peer's grid
    period = r["frame_period_s"]
    assert r["beat_offsets_s"], "no beat frames"
    offsets = r["beat_offsets_s"]
    assert all(-0.002 <= offset <= period + 0.002 for offset in offsets), offsets
    assert abs(r["beat_frames"] - r["grid_beats"]) <= 1  # no beat lost or doubled
    # the daemon's logged frame clock agrees with when its frames arrive (to the tenths of a
    # second its early, generous render-latency estimate shifts them by on a busy machine)
    assert abs(r["origin_estimate_error_s"]) < 0.5
    # a tempo change by the peer reaches the picture within 2 s
    assert r["follow_change_s"] < 2.0


def test_peers_joining_and_leaving_never_stop_the_render(scenarios: dict[str, Any]) -> None:
    r = result(scenarios, "follow")
    assert r["peers_while_joined"] == 2
    assert r["alive_after_churn"]
    # frames kept flowing at 20 fps while a peer joined, it left, and the last one left
    assert r["churn_max_gap_s"] < 0.5
    assert r["churn_frames"] >= 0.6 * 20 * r["churn_seconds"]


def test_lead_publishes_the_click_tracks_tempo_and_beats(scenarios: dict[str, Any]) -> None:
    r = result(scenarios, "lead")
    # the peer started at 90 BPM; the daemon moved its session to the music
    assert r["lock_s"] < 2.0
    assert r["tempo_min"] >= 119.0
    assert r["tempo_max"] <= 121.0
    assert len(r["phase_errors_s"]) >= 5
    assert max(abs(e) for e in r["phase_errors_s"]) <= 0.030, r["phase_errors_s"]
    assert abs(r["origin_estimate_error_s"]) < 0.5
    # --beat-source link: the picture follows the session it leads
    assert r["beat_source"] == "link"
    assert r["picture_tempo"] == pytest.approx(120.0, abs=1.0)
    assert r["alive"]
