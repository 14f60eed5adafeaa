"""Bad input at the CLI: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bridge.cli_process import TINY_64, env_without, run_hamba
from tests.engine.audio.signals import tones, write_audio


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    return write_audio(path, tones([440.0], 2.0, 22050), 22050)


@pytest.fixture
def busy_udp_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# what the daemon logs once the music is analysed, and once the model has loaded
MUSIC_READY, MODEL_LOADED = "hamba INFO: music:", "hamba INFO: loaded"


def assert_one_line_error(result: object, *needles: str) -> None:
    code = result.returncode  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("hamba: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_missing_audio_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    result = run_hamba(["run", "--audio", str(missing), "--model", "tiny"])
    assert_one_line_error(result, str(missing))


def test_size_not_multiple_of_8(short_wav: Path) -> None:
    result = run_hamba(["run", "--audio", str(short_wav), "--model", "tiny", "--width", "500"])
    assert_one_line_error(result, "inference.width", "multiple of 8")


def test_output_not_on_this_platform_fails_before_anything_loads(short_wav: Path) -> None:
    result = run_hamba(
        ["run", "--audio", str(short_wav), *TINY_64, "--output", "syphon", "--osc-port", "0",
         "--no-oscquery"]
    )  # fmt: skip
    assert_one_line_error(result, "'syphon'", "needs macOS")
    assert MUSIC_READY not in result.stderr
    assert MODEL_LOADED not in result.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="mps exists on macOS")
def test_unavailable_device_fails_before_anything_loads(short_wav: Path) -> None:
    result = run_hamba(
        ["run", "--audio", str(short_wav), *TINY_64, "--device", "mps", "--osc-port", "0",
         "--no-oscquery"]
    )  # fmt: skip
    assert_one_line_error(result, "diffusion.device 'mps'")
    assert MUSIC_READY not in result.stderr


def test_ndi_without_cyndilib_names_the_extra(short_wav: Path, tmp_path: Path) -> None:
    """cyndilib is an extra: where it is not installed, ``--output ndi`` says how to get it."""
    hidden = env_without(
        tmp_path, "cyndilib", "ModuleNotFoundError(\"No module named 'cyndilib'\")"
    )
    result = run_hamba(
        ["run", "--audio", str(short_wav), *TINY_64, "--output", "ndi", "--osc-port", "0",
         "--no-oscquery"],
        env=hidden,
    )  # fmt: skip
    assert_one_line_error(result, "'ndi'", "pip install 'hambametal[ndi]'", "shm")
    assert MODEL_LOADED not in result.stderr
    devices = run_hamba(["devices"], env=hidden)
    assert devices.returncode == 0, devices.stderr
    (ndi_row,) = [line for line in devices.stdout.splitlines() if " ndi " in line]
    assert ndi_row.strip().startswith("no")
    assert "hambametal[ndi]" in ndi_row


def test_unknown_output(short_wav: Path) -> None:
    result = run_hamba(
        [
            "run",
            "--audio",
            str(short_wav),
            *TINY_64,
            "--output",
            "hologram",
            "--osc-port",
            "0",
            "--no-oscquery",
        ]
    )
    assert_one_line_error(result, "hologram")


def test_unloadable_model(short_wav: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model"
    bogus.mkdir()
    result = run_hamba(
        ["render", str(short_wav), "-o", str(tmp_path / "x.mp4"), "--model", str(bogus)]
    )
    assert_one_line_error(result, str(bogus))


def test_offline_hub_model_says_how_to_fix(short_wav: Path, tmp_path: Path) -> None:
    result = run_hamba(
        [
            "render",
            str(short_wav),
            "-o",
            str(tmp_path / "x.mp4"),
            "--model",
            "someone/no-such-model",
        ]
    )
    assert_one_line_error(result, "someone/no-such-model", "--model tiny")


def test_port_in_use(short_wav: Path, busy_udp_port: int) -> None:
    result = run_hamba(
        [
            "run",
            "--audio",
            str(short_wav),
            *TINY_64,
            "--output",
            "png:" + str(short_wav.parent / "png"),
            "--osc-host",
            "127.0.0.1",
            "--osc-port",
            str(busy_udp_port),
            "--no-oscquery",
            "--duration",
            "1",
        ]
    )
    assert_one_line_error(result, str(busy_udp_port))
    assert MODEL_LOADED not in result.stderr


def test_unwritable_output_path(short_wav: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_hamba(
        ["render", str(short_wav), "-o", str(blocker / "sub" / "x.mp4"), "--model", "tiny"]
    )
    assert_one_line_error(result, str(blocker))


def test_bad_config_file(tmp_path: Path, short_wav: Path) -> None:
    config = tmp_path / "show.toml"
    config.write_text("[inference]\nwidth = 100\n")
    result = run_hamba(["run", "--audio", str(short_wav), "--config", str(config)])
    assert_one_line_error(result, str(config), "inference.width")


def test_bad_feedback_target(short_wav: Path) -> None:
    result = run_hamba(["run", "--audio", str(short_wav), "--feedback", "nohostport"])
    assert_one_line_error(result, "nohostport")


def test_bad_osc_allow_and_empty_token_fail_before_the_model_loads(short_wav: Path) -> None:
    # the model would be "missing/model": reaching it would name it instead
    common = ["run", "--audio", str(short_wav), "--model", "missing/model"]
    result = run_hamba([*common, "--osc-allow", "10.0.0.0/8", "--osc-allow", "300.1.1.1/8"])
    assert_one_line_error(result, "300.1.1.1/8")
    result = run_hamba([*common, "--control-token", ""])
    assert_one_line_error(result, "control_token")


def test_not_an_audio_file(tmp_path: Path) -> None:
    fake = tmp_path / "song.wav"
    fake.write_text("this is text, not audio")
    result = run_hamba(["render", str(fake), "-o", str(tmp_path / "x.mp4"), "--model", "tiny"])
    assert_one_line_error(result, str(fake))


def test_unknown_live_device() -> None:
    result = run_hamba(["run", "--live", "NoSuchCard", *TINY_64, "--osc-port", "0"])
    assert_one_line_error(result, "NoSuchCard")


def test_live_device_without_portaudio_names_device_and_package(tmp_path: Path) -> None:
    # sounddevice raises this OSError at import where libportaudio is missing
    hidden = env_without(tmp_path, "sounddevice", "OSError('PortAudio library not found')")
    result = run_hamba(["run", "--live", "NoSuchCard", *TINY_64, "--osc-port", "0"], env=hidden)
    assert_one_line_error(result, "NoSuchCard", "PortAudio", "apt-get install libportaudio2")
