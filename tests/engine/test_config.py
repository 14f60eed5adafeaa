"""Configuration: presets, validation that explains itself, TOML loading with overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import PipelineConfig, load_config, preset_values
from engine.errors import ConfigError, HambaError


def test_presets_differ_in_steps_and_vae() -> None:
    fast, balanced, quality = (
        PipelineConfig.fast_preset(),
        PipelineConfig.balanced_preset(),
        PipelineConfig.quality_preset(),
    )
    steps = [c.inference.num_inference_steps for c in (fast, balanced, quality)]
    assert steps == sorted(steps)
    assert steps[0] < steps[-1]
    assert fast.diffusion.use_tiny_vae
    assert not quality.diffusion.use_tiny_vae
    assert fast.stream.enable_similarity_filter


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("inference.width=500", "inference.width"),
        ("inference.height=12", "inference.height"),
        ("stream.temporal_blend_ratio=1.5", "stream.temporal_blend_ratio"),
        ("stream.similarity_threshold=-0.1", "stream.similarity_threshold"),
        ("audio.fps=0", "audio.fps"),
        ("diffusion.device=tpu", "diffusion.device"),
        ("inference.num_inference_steps=0", "inference.num_inference_steps"),
        ("diffusion.colour=1", "diffusion.colour"),
    ],
)
def test_invalid_values_name_the_field(override: str, culprit: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineConfig().with_overrides([override])
    assert culprit in str(info.value)


def test_multiple_of_8_message_explains() -> None:
    with pytest.raises(ConfigError, match="multiple of 8"):
        PipelineConfig().with_overrides({"inference.width": 500})


def test_errors_are_one_family() -> None:
    assert issubclass(ConfigError, HambaError)


def test_toml_then_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "show.toml"
    path.write_text(
        'preset = "quality"\n'
        "[inference]\nwidth = 768\nheight = 384\n"
        '[diffusion]\nmodel = "tiny"\n'
        "[audio]\nfps = 30\n"
    )
    config = load_config(path, overrides=["inference.width=640", 'prompt.base_prompt="neon rain"'])
    assert config.inference.width == 640  # override beats the file
    assert config.inference.height == 384  # file beats the default
    assert config.inference.num_inference_steps == 4  # the file's preset
    assert config.diffusion.model == "tiny"
    assert config.audio.fps == 30.0
    assert config.prompt.base_prompt == "neon rain"


def test_cli_preset_beats_file_preset(tmp_path: Path) -> None:
    path = tmp_path / "show.toml"
    path.write_text('preset = "quality"\n')
    assert load_config(path, preset="fast").inference.num_inference_steps == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("[inference\nwidth=", "not valid TOML"),
        ("[inference]\nwidth = 513\n", "inference.width"),
        ("[nosuchsection]\nx = 1\n", "nosuchsection"),
        ("preset = 3\n", "preset"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(ConfigError, match="fast, balanced, quality"):
        preset_values("ultra")


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match=r"section\.field"):
        PipelineConfig().with_overrides(["width"])
    with pytest.raises(ConfigError, match=r"section\.field"):
        PipelineConfig().with_overrides(["width=8"])


def test_chroma_prompts_need_twelve() -> None:
    with pytest.raises(ConfigError, match="12 prompts"):
        PipelineConfig().with_overrides({"prompt.chroma_prompts": ["a", "b"]})
