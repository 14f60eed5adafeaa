"""`hamba devices`, `osc-schema`, `check`, `bench` and the [run] table of a config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import build_parser, engine_config, main
from bridge.options import RunOptions

REPO = Path(__file__).resolve().parents[2]


def test_devices_lists_outputs_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "audio inputs:" in out
    assert "outputs:" in out
    lines = {
        line.split()[1]: line
        for line in out.splitlines()
        if line.startswith("  yes") or line.startswith("  no")
    }
    assert lines["shm"].startswith("  yes")
    assert lines["syphon"].startswith("  no")  # macOS only, and this is not macOS
    assert "macOS" in lines["syphon"] or "darwin" in lines["syphon"]


def test_osc_schema_json_matches_the_committed_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["osc-schema", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported == json.loads((REPO / "docs" / "osc-schema.json").read_text())


def test_osc_schema_markdown_to_file(tmp_path: Path) -> None:
    target = tmp_path / "osc.md"
    assert main(["osc-schema", "--format", "markdown", "-o", str(target)]) == 0
    text = target.read_text()
    assert "/hamba/blend" in text
    assert "/hamba/audio/beat" in text


def test_check_with_the_tiny_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--model", "tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "untrained" in out
    assert "RGBA" in out
    assert "all checks passed" in out


def test_check_reports_a_model_that_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--model", str(tmp_path / "missing"), "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert str(tmp_path / "missing") in out


def test_bench_refuses_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "warp-drive"]) == 2
    assert "warp-drive" in capsys.readouterr().err


def test_config_file_run_table_and_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "show.toml"
    config_file.write_text(
        'preset = "fast"\n'
        '[diffusion]\nmodel = "tiny"\n'
        "[inference]\nwidth = 320\n"
        '[run]\noutputs = ["shm", "ndi"]\nosc_port = 9100\nfeedback = ["127.0.0.1:7001"]\n'
    )
    args = build_parser().parse_args(
        ["run", "--config", str(config_file), "--width", "256", "--set", "audio.fps=30"]
    )
    config, run_table = engine_config(args)
    assert config.inference.width == 256  # the flag wins over the file
    assert config.diffusion.model == "tiny"
    assert config.audio.fps == 30.0
    assert config.stream.enable_similarity_filter  # the file's preset
    options = RunOptions.model_validate(run_table)
    assert options.outputs == ["shm", "ndi"]
    assert options.osc_port == 9100


def test_run_table_errors_name_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "show.toml"
    config_file.write_text("[run]\nosc_port = 99999\n")
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    assert main(["run", "--config", str(config_file), "--audio", str(audio)]) == 2
    err = capsys.readouterr().err
    assert "osc_port" in err
    assert "Traceback" not in err


def test_run_documents_the_measuring_models_and_the_sequential_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.daemon import Daemon

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert '"null"' in text
    assert '"null-fixed"' in text
    assert "--sequential" in text
    seen: list[bool] = []

    def run(self: Daemon) -> object:
        seen.append(self.options.pipelined)
        return self.stats

    monkeypatch.setattr(Daemon, "run", run)
    monkeypatch.setattr(Daemon, "install_signal_handlers", lambda self: None)
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    assert main(["run", "--audio", str(audio), "--model", "null"]) == 0
    assert main(["run", "--audio", str(audio), "--model", "null", "--sequential"]) == 0
    assert seen == [True, False]
