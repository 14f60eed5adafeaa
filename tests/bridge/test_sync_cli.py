"""`hamba run` with Link and MIDI options: clear errors at start, a show that goes on.

What ran here: the real CLI; Link's binding hidden behind a stand-in `link` module that fails
to import (as on a machine without the wheel); python-rtmidi for real, which finds no MIDI
system on these machines (no ALSA sequencer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bridge.cli_process import TINY_64, env_without, run_hamba
from tests.bridge.test_cli_errors import assert_one_line_error
from tests.engine.audio.signals import click_track, write_audio


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    y, _ = click_track(120, 3.0, 22050)
    return write_audio(tmp_path_factory.mktemp("sync") / "clicks.wav", y, 22050)


def run(clicks: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    cache = clicks.parent / "cache"
    return run_hamba(
        [
            "run",
            "--audio",
            str(clicks),
            *TINY_64,
            "--output",
            f"png:{clicks.parent / 'frames'}",
            "--osc-port",
            "0",
            "--no-oscquery",
            "--set",
            f'audio.cache_dir="{cache}"',
            *extra,
        ],
        env=env,
    )


def test_a_missing_link_library_names_the_install_command(clicks: Path, tmp_path: Path) -> None:
    env = env_without(tmp_path, "link", "ImportError('No module named link (stand-in)')")
    result = run(clicks, "--link", "follow", env=env)
    assert_one_line_error(result, "LinkPython-extern", "pip install 'hambametal[link]'")


def test_a_bad_midi_map_fails_before_the_model_loads(clicks: Path, tmp_path: Path) -> None:
    bad = tmp_path / "apc.toml"
    bad.write_text('[midi]\ninput = "APC40"\n[[midi.cc]]\ncc = 300\ncontrol = "/hamba/blend"\n')
    result = run(clicks, "--midi-map", str(bad))
    assert_one_line_error(result, str(bad), "cc.0.cc")
    assert "model" not in result.stderr  # the model never loaded
    bad.write_text('[midi]\ninput = "APC40"\n[[midi.cc]]\ncc = 1\ncontrol = "/hamba/nope"\n')
    assert_one_line_error(run(clicks, "--midi-map", str(bad)), "unknown control '/hamba/nope'")
    bad.write_text("[midi\n")
    assert_one_line_error(run(clicks, "--midi-map", str(bad)), str(bad), "not valid TOML")


def test_a_midi_table_in_the_config_is_checked_too(clicks: Path, tmp_path: Path) -> None:
    config = tmp_path / "show.toml"
    config.write_text('[run]\nlink = "sideways"\n')
    assert_one_line_error(run(clicks, "--config", str(config)), "link")
    config.write_text('[midi]\ninput = "APC40"\n[[midi.note]]\nnote = 1\naction = "explode"\n')
    assert_one_line_error(run(clicks, "--config", str(config)), str(config), "note.0.action")


def test_an_absent_midi_port_is_a_clear_error_at_start(clicks: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "map.toml"
    mapping.write_text('[midi]\ninput = "Twister"\n')
    result = run(clicks, "--midi-map", str(mapping))
    # here: no MIDI system at all; on a machine with one: the port is not found
    assert_one_line_error(result, "MIDI input")
    assert "no MIDI system available" in result.stderr or "'Twister' not found" in result.stderr


def test_devices_lists_midi_ports() -> None:
    result = run_hamba(["devices"])
    assert result.returncode == 0, result.stderr
    assert "midi inputs:" in result.stdout
    assert "midi outputs:" in result.stdout
