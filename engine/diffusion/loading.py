"""Where a model comes from and how it is read: a built-in tiny model, a diffusers folder, a
single checkpoint file (offline, :mod:`engine.diffusion.single_file`) or a hub id (local cache
first), as an SD 1.x/2.x or an SDXL diffusers pipeline.

Every failure is a :class:`ModelError` that names the culprit (the folder, the file, the hub id)
and, where the user can do something about it, says what.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from engine.errors import ModelError
from engine.logs import quiet_hub_symlink_deprecation

# every hub lookup below goes through diffusers, which passes an argument huggingface_hub warns about
quiet_hub_symlink_deprecation()

T = TypeVar("T")

SourceKind = Literal["tiny", "folder", "file", "hub"]

# diffusers pipeline classes whose folders hold the SD 1.x / 2.x components this engine drives
SD_PIPELINE_CLASSES = frozenset(
    {
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "LatentConsistencyModelPipeline",
        "AltDiffusionPipeline",
    }
)
# ... and the SDXL ones
SDXL_PIPELINE_CLASSES = frozenset({"StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"})
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)/(?P<file>[\w.-]+\.safetensors)$")
MODEL_HINT = (
    "pass --model PATH (a local diffusers folder or .safetensors checkpoint) "
    "or --model tiny (built-in, untrained; also tiny-sd2, tiny-sdxl)"
)
TINY_VAE_HINT = "set diffusion.tiny_vae to a local TAESD folder, or diffusion.use_tiny_vae = false"
LORA_HINT = "set diffusion.lora to a local .safetensors file or folder, or leave it unset"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference: what kind it is and where it lies."""

    kind: SourceKind
    location: str


def resolve_model_source(model: str) -> ModelSource:
    """Classify ``diffusion.model``; a path that does not exist is a ModelError naming it."""
    from engine.diffusion.tiny import is_tiny_model

    if is_tiny_model(model):
        return ModelSource("tiny", model)
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSource("folder", str(path))
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ModelError(
                f"model file {path}: not a checkpoint (expected one of "
                f"{', '.join(CHECKPOINT_SUFFIXES)}, or a diffusers folder)"
            )
        return ModelSource("file", str(path))
    if _looks_like_path(model) or not _HUB_ID.match(model):
        raise ModelError(f"model path not found: {model} ({MODEL_HINT})")
    return ModelSource("hub", model)


def hub_offline(local_files_only: bool) -> bool:
    """Whether the hub must not be asked: the config says so, or the environment does."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return local_files_only or any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def load_sd_pipeline(
    source: ModelSource,
    *,
    dtype: torch.dtype,
    local_files_only: bool,
    seed: int,
    height: int,
    width: int,
    xl: bool = False,
) -> Any:
    """Read a diffusers ``StableDiffusionPipeline`` (``xl``: ``StableDiffusionXLPipeline``) from
    the source, checked for that layout."""
    import diffusers

    # Any: to mypy diffusers' top-level names are its dummy objects (its __init__ imports them
    # first), and on a union of two of them it loses the untyped-calls exclusion (pyproject)
    pipeline_class: Any = (
        diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline
    )
    extra: dict[str, Any] = {**dtype_kwargs(dtype)}
    if not xl:
        extra.update(safety_checker=None, requires_safety_checker=False)
    if source.kind == "tiny":
        from engine.diffusion.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline(seed, height, width, name=source.location)
    elif source.kind == "folder":
        _check_pipeline_folder(Path(source.location), xl=xl)
        pipe = read_local(
            f"model folder {source.location}",
            lambda: pipeline_class.from_pretrained(source.location, local_files_only=True, **extra),
        )
    elif source.kind == "file":
        pipe = _load_single_file(Path(source.location), extra, xl=xl)
    else:
        pipe = read_hub(
            "model",
            source.location,
            lambda local: pipeline_class.from_pretrained(
                source.location, local_files_only=local, **extra
            ),
            local_files_only=local_files_only,
            hint=MODEL_HINT,
        )
    if xl:
        check_sdxl_architecture(pipe, source.location)
    else:
        check_sd_architecture(pipe, source.location)
    return pipe


def load_tiny_vae(spec: str, *, dtype: torch.dtype, local_files_only: bool) -> Any:
    """TAESD (``AutoencoderTiny``) from a folder or a hub id, same rules as the model."""
    from diffusers import AutoencoderTiny

    path = Path(spec).expanduser()
    if path.is_dir():
        return read_local(
            f"tiny vae folder {path}",
            lambda: AutoencoderTiny.from_pretrained(str(path), **dtype_kwargs(dtype)),
        )
    if _looks_like_path(spec) or not _HUB_ID.match(spec):
        raise ModelError(f"tiny vae path not found: {spec} ({TINY_VAE_HINT})")
    return read_hub(
        "tiny vae",
        spec,
        lambda local: AutoencoderTiny.from_pretrained(
            spec, local_files_only=local, **dtype_kwargs(dtype)
        ),
        local_files_only=local_files_only,
        hint=TINY_VAE_HINT,
    )


def fuse_lora(pipe: Any, spec: str, scale: float, *, local_files_only: bool) -> None:
    """Load an accelerator LoRA (Hyper-SD, LCM-LoRA), fuse it into the weights, drop the adapters.

    ``spec`` is a ``.safetensors`` file, a folder, a hub id, or ``org/repo/file.safetensors``.
    Fused, it costs nothing per frame.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        from safetensors.torch import load_file

        state = read_local(f"lora file {path}", lambda: load_file(str(path)))
        read_local(f"lora file {path}", lambda: pipe.load_lora_weights(state))
    elif path.is_dir():
        read_local(
            f"lora folder {path}", lambda: pipe.load_lora_weights(str(path), local_files_only=True)
        )
    elif (match := _HUB_FILE.match(spec)) is not None:
        repo, weight = match["repo"], match["file"]
        read_hub(
            "lora",
            spec,
            lambda local: pipe.load_lora_weights(repo, weight_name=weight, local_files_only=local),
            local_files_only=local_files_only,
            hint=LORA_HINT,
        )
    elif _HUB_ID.match(spec) and not _looks_like_path(spec):
        read_hub(
            "lora",
            spec,
            lambda local: pipe.load_lora_weights(spec, local_files_only=local),
            local_files_only=local_files_only,
            hint=LORA_HINT,
        )
    else:
        raise ModelError(f"lora path not found: {spec} ({LORA_HINT})")
    read_local(f"lora {spec}", lambda: pipe.fuse_lora(lora_scale=scale))
    # the fused weights stay; the adapter layers (and their per-call cost) go
    pipe.unload_lora_weights()


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The loaders' precision argument: diffusers 0.42 renamed ``torch_dtype`` to ``dtype`` and
    warns on the old name; older releases only know the old one."""
    from diffusers.utils import deprecation_utils

    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype" if renamed else "torch_dtype": dtype}


def check_sd_architecture(pipe: Any, name: str) -> None:
    """The components must fit together as an SD 1.x/2.x pipeline; else a ModelError naming it."""
    from diffusers import UNet2DConditionModel

    unet_config, vae_config = pipe.unet.config, pipe.vae.config
    if not isinstance(pipe.unet, UNet2DConditionModel) or unet_config.in_channels != 4:
        raise ModelError(
            f"model {name}: its unet ({type(pipe.unet).__name__}, "
            f"{getattr(unet_config, 'in_channels', '?')} input channels) is not a text-to-image "
            "SD 1.x/2.x unet with 4 latent channels"
        )
    hidden = pipe.text_encoder.config.hidden_size
    if unet_config.cross_attention_dim != hidden:
        raise ModelError(
            f"model {name}: the unet attends to {unet_config.cross_attention_dim}-wide text "
            f"but the text encoder gives {hidden}: mismatched components"
        )
    if vae_config.latent_channels != 4:
        raise ModelError(f"model {name}: the vae has {vae_config.latent_channels} latent channels")


def check_sdxl_architecture(pipe: Any, name: str) -> None:
    """The components must fit together as an SDXL pipeline; else a ModelError naming it."""
    from diffusers import UNet2DConditionModel

    unet_config = pipe.unet.config
    if (
        not isinstance(pipe.unet, UNet2DConditionModel)
        or unet_config.in_channels != 4
        or getattr(unet_config, "addition_embed_type", None) != "text_time"
    ):
        raise ModelError(
            f"model {name}: its unet ({type(pipe.unet).__name__}) is not a text-to-image SDXL "
            "unet (4 latent channels, text_time added conditioning)"
        )
    widths = [
        int(encoder.config.hidden_size)
        for encoder in (pipe.text_encoder, pipe.text_encoder_2)
        if encoder is not None
    ]
    if unet_config.cross_attention_dim != sum(widths):
        raise ModelError(
            f"model {name}: the unet attends to {unet_config.cross_attention_dim}-wide text but "
            f"the text encoders give {' + '.join(map(str, widths))}: mismatched components"
        )
    projection = int(pipe.text_encoder_2.config.projection_dim)
    expected = 6 * int(unet_config.addition_time_embed_dim) + projection
    if int(unet_config.projection_class_embeddings_input_dim) != expected:
        raise ModelError(
            f"model {name}: the unet's added conditioning takes "
            f"{unet_config.projection_class_embeddings_input_dim} values, the pooled text "
            f"({projection}) and six time ids give {expected}: mismatched components"
        )
    if pipe.vae.config.latent_channels != 4:
        raise ModelError(
            f"model {name}: the vae has {pipe.vae.config.latent_channels} latent channels"
        )


def read_local(what: str, load: Callable[[], T]) -> T:
    """Run a loader over local files; whatever it raises becomes a ModelError naming ``what``."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as exc:  # loaders raise anything; the user needs one line
        raise ModelError(f"{what}: cannot be loaded ({_reason(exc)})") from exc


def read_hub(
    what: str,
    hub_id: str,
    load: Callable[[bool], T],
    *,
    local_files_only: bool,
    hint: str,
) -> T:
    """Try the local hub cache, then (unless offline) the hub; failures name the id and the fix."""
    try:
        return load(True)
    except Exception as cached_exc:  # see read_local
        if hub_offline(local_files_only):
            raise ModelError(
                f"{what} {hub_id!r} is not usable from the local Hugging Face cache and the hub "
                f"is offline ({_reason(cached_exc)}): {hint}"
            ) from cached_exc
    try:
        return load(False)
    except Exception as exc:  # see read_local
        raise ModelError(
            f"{what} {hub_id!r} cannot be downloaded ({_reason(exc)}): {hint}"
        ) from exc


def _check_pipeline_folder(folder: Path, *, xl: bool) -> None:
    """The folder must hold the kind's pipeline with every component's files (tokenizers too)."""
    from engine.diffusion.identify import pipeline_class_of

    cls = pipeline_class_of(folder)
    classes, family = (
        (SDXL_PIPELINE_CLASSES, "SDXL") if xl else (SD_PIPELINE_CLASSES, "Stable Diffusion 1.x/2.x")
    )
    if cls not in classes:
        raise ModelError(
            f"model folder {folder}: holds a {cls or 'pipeline of unknown class'}, not a "
            f"{family} pipeline ({', '.join(sorted(classes))})"
        )
    for name in ("tokenizer", "tokenizer_2") if xl else ("tokenizer",):
        files = folder / name
        has_bpe = (files / "vocab.json").is_file() and (files / "merges.txt").is_file()
        if not has_bpe and not (files / "tokenizer.json").is_file():
            raise ModelError(
                f"model folder {folder}: {name}/ lacks the tokenizer's files (vocab.json and "
                "merges.txt, or tokenizer.json): copy them from the model's original folder"
            )


def _load_single_file(path: Path, extra: dict[str, Any], *, xl: bool) -> Any:
    from engine.diffusion.single_file import detect_family, load_checkpoint

    detected = detect_family(path)
    family = detected.family
    wanted = "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline"
    if family.pipeline_class != wanted:
        raise ModelError(
            f"model file {path}: an {family.label} checkpoint, not what this model kind runs "
            f"({'SDXL' if xl else 'SD 1.x/2.x'})"
        )
    return load_checkpoint(path, detected, extra)


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or "\\" in spec
        or spec.count("/") > 1
        or spec.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
