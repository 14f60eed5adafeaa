"""Pydantic configuration: sections, presets and loading from TOML with overrides.

The sections mirror the flow of a frame: ``audio`` (analysis), ``diffusion`` (which model,
where), ``inference`` (size, steps), ``stream`` (streaming optimisations), ``latent`` (latent
walks), ``prompt`` (prompt blending) and ``profiling``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError
from osc_schema.controls import CHROMA_PROMPT_DEFAULTS, check_twelve_prompts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

PresetName = Literal["fast", "balanced", "quality"]
PRESET_NAMES: tuple[PresetName, ...] = ("fast", "balanced", "quality")

DEFAULT_MODEL = "stabilityai/sd-turbo"

DEFAULT_CHROMA_PROMPTS: tuple[str, ...] = CHROMA_PROMPT_DEFAULTS


class _Section(BaseModel):
    """Common settings: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AudioConfig(_Section):
    """Audio analysis: sampling, frame rate of the features, live input."""

    sample_rate: int = Field(22050, ge=8000, le=192000, description="analysis sample rate (Hz)")
    fps: float = Field(24.0, gt=0, le=1000, description="video frames per second of the features")
    hop_length: int = Field(512, ge=64, le=8192, description="analysis hop (samples)")
    n_fft: int = Field(2048, ge=256, le=16384, description="fft size (samples)")
    block_size: int = Field(512, ge=64, le=8192, description="live audio block (samples)")
    tempo_min: float = Field(60.0, gt=0, description="slowest tempo to consider (BPM)")
    tempo_max: float = Field(200.0, gt=0, description="fastest tempo to consider (BPM)")
    band_edges: tuple[float, float] = Field(
        (250.0, 4000.0), description="low/mid and mid/high band edges (Hz)"
    )
    cache: bool = Field(True, description="cache offline analysis on disk")
    cache_dir: Path | None = Field(None, description="analysis cache folder (default: user cache)")
    device: str | int | None = Field(None, description="live input device (name or index)")
    channels: int = Field(1, ge=1, le=32, description="live input channels")

    @model_validator(mode="after")
    def _check_ranges(self) -> AudioConfig:
        if self.tempo_min >= self.tempo_max:
            raise ValueError(
                f"tempo_min ({self.tempo_min}) must be below tempo_max ({self.tempo_max})"
            )
        low, high = self.band_edges
        if not 0 < low < high < self.sample_rate / 2:
            raise ValueError(
                f"band_edges {self.band_edges} must rise inside (0, {self.sample_rate / 2}) Hz"
            )
        if self.n_fft < self.hop_length:
            raise ValueError(
                f"n_fft ({self.n_fft}) must be at least hop_length ({self.hop_length})"
            )
        return self


class DiffusionConfig(_Section):
    """Which model runs, on which device, with which precision and accelerations."""

    model: str = Field(
        DEFAULT_MODEL,
        description='"tiny" (built-in, untrained), a local folder, a .safetensors/.ckpt file or a hub id',
    )
    device: str = Field("auto", description="auto, cuda, cuda:N, mps or cpu")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto picks float16 on cuda/mps, float32 on cpu"
    )
    use_tiny_vae: bool = Field(True, description="decode with TAESD (AutoencoderTiny)")
    tiny_vae: str = Field("madebyollin/taesd", description="TAESD folder or hub id")
    lora: str | None = Field(
        None,
        description="accelerator LoRA fused at load (Hyper-SD, LCM-LoRA): file, folder or hub id",
    )
    lora_scale: float = Field(1.0, ge=0, le=2, description="strength of the fused LoRA")
    scheduler: Literal["auto", "lcm", "tcd", "euler_ancestral"] = Field(
        "auto", description="auto: from the model and LoRA"
    )
    channels_last: bool = Field(True, description="channels_last memory format for the UNet")
    compile: bool = Field(False, description="torch.compile the UNet and decoder")
    cuda_graphs: bool = Field(False, description="capture the per-frame step as a CUDA graph")
    seed: int = Field(42, ge=0, description="seed for noise and the built-in model")
    local_files_only: bool = Field(False, description="never touch the network for hub ids")
    null_render_ms: float = Field(
        3.0, ge=0, le=1000, description="render time of the null-fixed measuring model (ms)"
    )

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name 'tiny', a path or a hub id")
        return value.strip()

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        base = value.split(":", 1)[0]
        if base not in {"auto", "cuda", "mps", "cpu"}:
            raise ValueError(f"device {value!r} is not one of auto, cuda, cuda:N, mps, cpu")
        return value


class InferenceConfig(_Section):
    """Size and steps of each frame."""

    height: int = Field(512, ge=64, le=2048, description="frame height (pixels, multiple of 8)")
    width: int = Field(512, ge=64, le=2048, description="frame width (pixels, multiple of 8)")
    num_inference_steps: int = Field(1, ge=1, le=50, description="denoising steps per frame")
    guidance_scale: float = Field(0.0, ge=0, le=20, description="classifier-free guidance (0: off)")
    batch_size: int = Field(1, ge=1, le=64, description="frames rendered per batch (offline)")
    strength: float = Field(1.0, ge=0, le=1, description="noise strength (1: pure text-to-image)")

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (the VAE downsamples by 8)")
        return value


class StreamConfig(_Section):
    """StreamDiffusion-style optimisations."""

    temporal_blend_ratio: float = Field(
        0.3, ge=0, le=1, description="weight of the previous frame's latent in the next one"
    )
    enable_temporal_coherence: bool = Field(True, description="blend with the previous latent")
    enable_similarity_filter: bool = Field(False, description="skip near-identical inputs")
    similarity_threshold: float = Field(
        0.98, ge=0, le=1, description="cosine similarity to skip at"
    )
    similarity_max_skip: int = Field(10, ge=0, description="never skip more frames in a row")
    img2img_feedback: bool = Field(False, description="previous frame as the init image")
    feedback_strength: float = Field(0.5, ge=0, le=1, description="img2img strength (music scales)")
    use_stream_batch: bool = Field(True, description="stream batch for multi-step schedules")
    prompt_cache_size: int = Field(256, ge=1, description="prompts kept encoded")


class LatentConfig(_Section):
    """Music-synchronised latent walks."""

    walk: Literal["beat_slerp", "energy", "circular"] = Field("beat_slerp", description="walk kind")
    seed: int = Field(42, ge=0, description="seed of the keyframe noises")
    beats_per_keyframe: int = Field(1, ge=1, le=64, description="beats between keyframes")
    energy_scale: float = Field(1.0, ge=0, le=10, description="how far energy pushes the walk")
    circle_radius: float = Field(1.0, gt=0, le=10, description="radius of the circular walk")


class PromptConfig(_Section):
    """Prompts and their chroma-weighted blending."""

    base_prompt: str = Field("abstract flowing liquid light, vivid colors, high detail")
    negative_prompt: str = Field("")
    chroma_prompts: tuple[str, ...] = Field(
        DEFAULT_CHROMA_PROMPTS, description="one prompt per pitch class, C to B"
    )
    chroma_weight: float = Field(0.3, ge=0, le=1, description="share of the chroma prompts")
    smoothing: float = Field(0.8, ge=0, lt=1, description="temporal smoothing of the weights")

    _twelve = field_validator("chroma_prompts")(check_twelve_prompts)


class ProfilingConfig(_Section):
    """Per-stage timing and memory."""

    enabled: bool = Field(False, description="collect per-stage timings")
    export_path: Path | None = Field(None, description="write the timings as JSON here at exit")


class PipelineConfig(_Section):
    """The whole engine's configuration."""

    audio: AudioConfig = Field(default_factory=AudioConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    latent: LatentConfig = Field(default_factory=LatentConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    profiling: ProfilingConfig = Field(default_factory=ProfilingConfig)

    @classmethod
    def fast_preset(cls) -> PipelineConfig:
        """1 step, TAESD, similarity filter on: the most frames per second."""
        return cls.preset("fast")

    @classmethod
    def balanced_preset(cls) -> PipelineConfig:
        """2 steps, TAESD: the stage default."""
        return cls.preset("balanced")

    @classmethod
    def quality_preset(cls) -> PipelineConfig:
        """4 steps, full VAE, lighter blending: for renders and slower shows."""
        return cls.preset("quality")

    @classmethod
    def preset(cls, name: str) -> PipelineConfig:
        """The named preset's configuration (fast, balanced or quality)."""
        return cls.model_validate(preset_values(name))

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> PipelineConfig:
        """A copy with dotted-key overrides applied (``{"inference.width": 768}`` or ``["inference.width=768"]``)."""
        data = self.model_dump()
        for key, value in parse_overrides(overrides).items():
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")


def preset_values(name: str) -> dict[str, Any]:
    """The values a preset sets, as a nested dict (sections -> fields)."""
    try:
        return {section: dict(fields) for section, fields in _PRESETS[name].items()}
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}: choose one of {', '.join(PRESET_NAMES)}"
        ) from None


_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fast": {
        "diffusion": {"use_tiny_vae": True},
        "inference": {"num_inference_steps": 1, "batch_size": 1},
        "stream": {
            "temporal_blend_ratio": 0.35,
            "enable_temporal_coherence": True,
            "enable_similarity_filter": True,
            "similarity_threshold": 0.98,
        },
    },
    "balanced": {
        "diffusion": {"use_tiny_vae": True},
        "inference": {"num_inference_steps": 2, "batch_size": 2},
        "stream": {
            "temporal_blend_ratio": 0.3,
            "enable_temporal_coherence": True,
            "enable_similarity_filter": False,
            "similarity_threshold": 0.98,
        },
    },
    "quality": {
        "diffusion": {"use_tiny_vae": False},
        "inference": {"num_inference_steps": 4, "batch_size": 4},
        "stream": {
            "temporal_blend_ratio": 0.2,
            "enable_temporal_coherence": True,
            "enable_similarity_filter": False,
            "similarity_threshold": 0.99,
        },
    },
}


def load_config(
    path: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
) -> PipelineConfig:
    """Build a configuration: preset (if any), then the TOML file (if any), then overrides.

    A TOML file may name a preset itself at top level (``preset = "fast"``); the file's sections
    then refine it. Errors name the file and the field.
    """
    file_data = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    return config_from_data(file_data, source=source, preset=preset, overrides=overrides)


def config_from_data(
    data: Mapping[str, Any],
    *,
    source: str,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
) -> PipelineConfig:
    """Like :func:`load_config` for data already read (``source`` names it in errors)."""
    file_data = dict(data)
    file_preset = file_data.pop("preset", None)
    if preset is None and file_preset is not None:
        if not isinstance(file_preset, str):
            raise ConfigError(f"{source}: preset must be a string, got {file_preset!r}")
        preset = file_preset
    merged: dict[str, Any] = preset_values(preset) if preset is not None else {}
    _merge(merged, file_data)
    for key, value in parse_overrides(overrides).items():
        _set_dotted(merged, key, value)
    return _validate(merged, source=source)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict; a missing or malformed file is a ConfigError naming it."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a folder, not a file: {file}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read ({exc})") from None


def _validate(data: Mapping[str, Any], *, source: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``inference.width: 500 is not a multiple of 8``."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(root)"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        parts.append(f"{field}: {message}{shown}")
    return "; ".join(parts)


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    if isinstance(overrides, Mapping):
        return {str(k): v for k, v in overrides.items()}
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.field=value")
        parsed[key.strip()] = _parse_scalar(raw.strip())
    return parsed


def _parse_scalar(raw: str) -> Any:
    """Parse an override value with TOML's rules, falling back to a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in PipelineConfig.model_fields:
        sections = ", ".join(PipelineConfig.model_fields)
        raise ConfigError(f"override {key!r} must be section.field with section one of {sections}")
    section, field = parts
    target = data.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"override {key!r}: {section} is not a section")
    target[field] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
