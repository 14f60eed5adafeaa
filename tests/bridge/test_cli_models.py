"""`hamba models` lists what is on disk with its kind, size and fit; `hamba check --model X`
loads X (any kind) and renders one frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from bridge.cli import main
from engine.diffusion.tiny import build_tiny_pipeline
from tests.engine.diffusion.ldm_layout import original_layout
from tests.engine.diffusion.test_kinds import cache_snapshot


def weights_count(pipe: object) -> int:
    parts = ("unet", "vae", "text_encoder", "text_encoder_2")
    modules = [getattr(pipe, p) for p in parts if getattr(pipe, p, None) is not None]
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture
def shelf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A cached SDXL-shaped hub model, a folder of an SD 2.x-shaped one, an SD 1.x-shaped
    checkpoint file and a broken file, the hub offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    xl = build_tiny_pipeline(0, 64, 64, name="tiny-sdxl")
    xl.save_pretrained(tmp_path / "xl")
    cache_snapshot(cache, "acme/xl-turbo", tmp_path / "xl")
    shutil.rmtree(tmp_path / "xl")
    models = tmp_path / "models"
    sd2 = build_tiny_pipeline(0, 64, 64, name="tiny-sd2")
    sd2.save_pretrained(models / "my-sd2")
    sd1 = build_tiny_pipeline(0, 64, 64, vae="kl")
    save_file(original_layout(sd1), str(models / "sd1.safetensors"))
    (models / "broken.safetensors").write_bytes(b"\x00" * 64)
    return {"models": models, "xl": xl, "sd2": sd2, "sd1": sd1}


def test_models_lists_kinds_sizes_and_fit(
    shelf: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", str(shelf["models"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("acme", "/"))}
    models = Path(str(shelf["models"]))
    xl, sd2, sd1 = (
        rows["acme/xl-turbo"],
        rows[str(models / "my-sd2")],
        rows[str(models / "sd1.safetensors")],
    )
    assert xl.split()[1:3] == ["cache", "sdxl"]
    assert sd2.split()[1:3] == ["folder", "sd"]
    assert sd1.split()[1:3] == ["file", "sd"]
    for row, pipe in ((xl, shelf["xl"]), (sd2, shelf["sd2"]), (sd1, shelf["sd1"])):
        assert f"{weights_count(pipe) / 1e9:.2f} B" in row
        assert "float32" in row
        assert row.endswith("yes (cpu: slow)")
    broken = rows[str(models / "broken.safetensors")]
    assert "no:" in broken
    assert "broken.safetensors" in broken
    assert "built in tiny, tiny-sd2, tiny-sdxl" in out


@pytest.mark.parametrize("model", ["tiny-sd2", "tiny-sdxl"])
def test_check_loads_each_kind_and_renders_a_frame(
    model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--model", model, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "untrained" in out
    assert "frame    128x128 RGBA" in out
    assert "all checks passed" in out


def test_models_reads_a_config_that_run_and_render_accept(
    shelf: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = Path(str(shelf["models"]))
    config = tmp_path / "show.toml"
    config.write_text(
        f'[diffusion]\nmodel = "{models / "my-sd2"}"\n'
        "[run]\nosc_port = 9100\n"
        "[render]\nworkers = 2\n"
        '[midi]\ninput = "APC40"\n'
    )
    assert main(["models", "--config", str(config), "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [str(models / "my-sd2"), "folder", "sd"] in [row[:3] for row in rows]
