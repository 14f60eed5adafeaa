"""LinkSession with real Link peers (inside `unshare -n`), and its errors (no network needed)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from bridge.link.session import LINK_INSTALL, LinkError, LinkSession, load_link
from tests.bridge.link.netns import require_link, run_in_netns


@pytest.fixture(scope="module")
def checks() -> dict[str, Any]:
    require_link()
    done = run_in_netns(["-m", "tests.bridge.link.session_checks"], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_follow_reads_the_peers_timeline(checks: dict[str, Any]) -> None:
    r = checks["follow"]
    assert r["joined_s"] is not None
    assert r["joined_s"] < 2.0
    assert r["following"]
    # beat positions at now and ahead agree with the peer's own conversion (micro-beats)
    assert max(r["position_errors"]) < 1e-4
    feedback = r["feedback"]
    assert feedback["/hamba/link/peers"] == [1]
    assert feedback["/hamba/link/tempo"][0] == pytest.approx(97.0, abs=0.01)
    assert 0.0 <= feedback["/hamba/link/phase"][0] < 4.0


def test_lead_puts_the_session_on_the_music_grid(checks: dict[str, Any]) -> None:
    r = checks["lead"]
    assert r["joined_s"] is not None
    assert r["locked_s"] is not None
    assert r["locked_s"] < 2.0
    # the peer's beats sit on the grid's beats (within a millisecond)
    assert max(abs(e) for e in r["beat_errors_s"]) < 0.001


def test_auto_follows_another_peers_tempo_and_leads_alone(checks: dict[str, Any]) -> None:
    r = checks["auto"]
    assert r["alone_following"] is False
    # a joiner takes the session's tempo: that is not a change by another peer
    assert r["joiner_tempo"] == pytest.approx(110.0, abs=0.01)
    assert r["following_after_join"] is False
    assert r["follow_s"] is not None
    assert r["follow_s"] < 1.0
    assert r["reading_tempo"] == pytest.approx(140.0, abs=0.01)
    assert r["lead_again_s"] is not None
    assert r["lead_again_s"] < 1.0
    assert r["tempo_after"] is not None  # alone, the music's tempo is back


def test_a_missing_binding_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "link", None)  # what `import link` meets without the wheel
    with pytest.raises(LinkError, match="LinkPython-extern") as info:
        load_link()
    assert LINK_INSTALL in str(info.value)
    with pytest.raises(LinkError, match="pip install"):
        LinkSession("follow")


def test_a_foreign_link_module_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    monkeypatch.setitem(sys.modules, "link", types.ModuleType("link"))
    with pytest.raises(LinkError, match="not LinkPython-extern"):
        load_link()


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(LinkError, match="quantum"):
        LinkSession("follow", quantum=0)
    with pytest.raises(LinkError, match="beat grid"):
        LinkSession("lead")
