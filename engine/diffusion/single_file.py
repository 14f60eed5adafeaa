"""Single checkpoint files (``.safetensors``, ``.ckpt``) read offline.

A checkpoint from a model site holds the weights in the original (LDM/SGM) layout and nothing
else: diffusers' ``from_single_file`` needs the family's diffusers configs and tokenizers, and by
default fetches them from the hub, so on a machine that has never been online it cannot load.
This module ships what each family needs (package data under ``data/configs/``: the published
configs of ``stable-diffusion-v1-5/stable-diffusion-v1-5``, ``stabilityai/stable-diffusion-2-1-base``,
``stabilityai/stable-diffusion-2-1`` and ``stabilityai/stable-diffusion-xl-base-1.0``, weights
excluded; CLIP's tokenizer from :mod:`engine.diffusion.clip_tokenizer`), recognises the family
from the tensor names, and hands diffusers the shipped folder: nothing is fetched.

Families are told apart by what only they hold: SDXL's two text encoders under
``conditioner.embedders``, SD 2.x's OpenCLIP encoder under ``cond_stage_model.model``, SD 1.x's
CLIP under ``cond_stage_model.transformer``. SD 2.x comes as 512 px epsilon (2.1-base, sd-turbo)
or 768 px v-prediction (2.1); the weights do not say which, so, as ComfyUI does, a spread above
0.09 of the last output block's ``norm1.bias`` means v-prediction; a ``v_pred`` marker tensor
(kohya's trainers write one) says so outright, for SDXL too. The built-in tiny architectures are
families as well (their configs are written from the builders), which is how the tests prove
this path with checkpoints they write in the original layout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.diffusion.file_cache import FileCache
from engine.errors import ModelError

CONFIGS = Path(__file__).parent / "data" / "configs"
UNET_PREFIX = "model.diffusion_model."
_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_SDXL_OPENCLIP = "conditioner.embedders.1.model.positional_embedding"
_SDXL_REFINER = "conditioner.embedders.0.model.text_projection"
_SD2_OPENCLIP = "cond_stage_model.model.token_embedding.weight"
_SD1_CLIP = "cond_stage_model.transformer."
_V_HEURISTIC = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
_V_MARKER = "v_pred"
_V_SPREAD = 0.09
# safetensors' dtype names as torch's
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# the tiny architectures' first unet width (real families start at 320)
_TINY_WIDTH = 32


@dataclass(frozen=True)
class CheckpointFamily:
    """A model family a single checkpoint can belong to, and where its configs come from."""

    name: str
    label: str
    pipeline_class: str
    hub_repo: str
    # the padding token of each tokenizer (tokenizer, tokenizer_2)
    pads: tuple[str, ...]
    # the built-in model whose architecture it is (tiny families only)
    tiny: str | None = None


FAMILIES: dict[str, CheckpointFamily] = {
    f.name: f
    for f in (
        CheckpointFamily(
            "sd1",
            "SD 1.x",
            "StableDiffusionPipeline",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            ("<|endoftext|>",),
        ),
        CheckpointFamily(
            "sd2",
            "SD 2.x (512, epsilon)",
            "StableDiffusionPipeline",
            "stabilityai/stable-diffusion-2-1-base",
            ("!",),
        ),
        CheckpointFamily(
            "sd2-v",
            "SD 2.x (768, v-prediction)",
            "StableDiffusionPipeline",
            "stabilityai/stable-diffusion-2-1",
            ("!",),
        ),
        CheckpointFamily(
            "sdxl",
            "SDXL",
            "StableDiffusionXLPipeline",
            "stabilityai/stable-diffusion-xl-base-1.0",
            ("<|endoftext|>", "!"),
        ),
        CheckpointFamily(
            "tiny", "tiny (SD 1.x-shaped)", "StableDiffusionPipeline", "", ("<|pad|>",), "tiny"
        ),
        CheckpointFamily(
            "tiny-sd2",
            "tiny-sd2 (SD 2.x-shaped)",
            "StableDiffusionPipeline",
            "",
            ("!",),
            "tiny-sd2",
        ),
        CheckpointFamily(
            "tiny-sdxl",
            "tiny-sdxl (SDXL-shaped)",
            "StableDiffusionXLPipeline",
            "",
            ("<|endoftext|>", "!"),
            "tiny-sdxl",
        ),
    )
}
_tiny_folders: dict[str, Path] = {}
_tiny_root: tempfile.TemporaryDirectory[str] | None = None


@dataclass(frozen=True)
class Detected:
    """What a checkpoint file is: its family, and a prediction type its weights insist on."""

    family: CheckpointFamily
    prediction: str | None = None


@dataclass(frozen=True)
class TensorHeader:
    """What a checkpoint's tensors are, read without loading the weights where the format
    allows: each one's shape and dtype (torch's name: ``float16``), and the spread of the bias
    that tells SD 2.x v-prediction apart (``None`` when the file has none or it is unreadable)."""

    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, str]
    v_spread: float | None = None


def read_header(path: Path) -> TensorHeader:
    """A checkpoint's :class:`TensorHeader`, read once while the file is unchanged; ModelError
    naming the file when it is unreadable or holds no tensors."""
    from engine.diffusion.loading import read_local

    header = read_local(f"model file {path}", lambda: _HEADERS(path))
    if not header.shapes:
        raise ModelError(f"model file {path}: cannot be loaded (it holds no tensors)")
    return header


def _read_header(path: Path) -> TensorHeader:
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, str] = {}
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                part = handle.get_slice(key)
                shapes[key] = tuple(part.get_shape())
                dtype = part.get_dtype()
                dtypes[key] = _SAFETENSORS_DTYPES.get(dtype, dtype)
            has_bias = _V_HEURISTIC in shapes
            spread = _spread(lambda: handle.get_tensor(_V_HEURISTIC)) if has_bias else None
        return TensorHeader(shapes, dtypes, spread)
    state = {k: v for k, v in torch_state(path).items() if isinstance(v, torch.Tensor)}
    bias = state.get(_V_HEURISTIC)
    return TensorHeader(
        {k: tuple(v.shape) for k, v in state.items()},
        {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()},
        None if bias is None else _spread(lambda: bias),
    )


# a start reads a checkpoint to pick its kind and again to load it: one read serves both
_HEADERS = FileCache(_read_header)


def detect_family(path: Path) -> Detected:
    """The family of a checkpoint, from its tensor names; ModelError naming the file and what it
    found when it is no text-to-image SD 1.x/2.x/SDXL checkpoint."""
    header = read_header(path)
    shapes = header.shapes
    conv_in = shapes.get(_CONV_IN)
    if conv_in is None:
        sample = ", ".join(sorted(shapes)[:3])
        raise ModelError(
            f"model file {path}: no Stable Diffusion unet in it (no {UNET_PREFIX}* tensors; it "
            f"holds e.g. {sample}): a LoRA, a VAE or another architecture is not a model here"
        )
    if len(conv_in) != 4 or conv_in[1] != 4:
        raise ModelError(
            f"model file {path}: its unet takes {conv_in[1] if len(conv_in) > 1 else '?'} input "
            "channels (an inpainting or other special model), not a text-to-image model's 4"
        )
    tiny = conv_in[0] == _TINY_WIDTH
    marked_v = _V_MARKER in shapes
    if _SDXL_OPENCLIP in shapes:
        return Detected(
            FAMILIES["tiny-sdxl" if tiny else "sdxl"], "v_prediction" if marked_v else None
        )
    if _SDXL_REFINER in shapes:
        raise ModelError(f"model file {path}: an SDXL refiner, which renders no frames on its own")
    if _SD2_OPENCLIP in shapes:
        if tiny:
            return Detected(FAMILIES["tiny-sd2"])
        spread = header.v_spread
        looks_v = spread is not None and spread > _V_SPREAD
        return Detected(FAMILIES["sd2-v" if marked_v or looks_v else "sd2"])
    if any(k.startswith(_SD1_CLIP) for k in shapes):
        return Detected(FAMILIES["tiny" if tiny else "sd1"])
    raise ModelError(
        f"model file {path}: it has a Stable Diffusion unet but none of the text encoders of "
        "SD 1.x (cond_stage_model.transformer), SD 2.x (cond_stage_model.model) or SDXL "
        "(conditioner.embedders)"
    )


def config_folder(family: CheckpointFamily) -> Path:
    """The diffusers config folder of a family: shipped, or written from a tiny builder."""
    if family.tiny is None:
        folder = CONFIGS / family.name
        if not (folder / "model_index.json").is_file():
            raise ModelError(
                f"{family.label} checkpoints: the packaged configs ({folder}) are missing; "
                f"reinstall hambametal, or fetch the config files of {family.hub_repo} once "
                "(model_index.json and */config.json, */scheduler_config.json)"
            )
        return folder
    written = _tiny_folders.get(family.tiny)
    if written is None:
        written = _write_tiny_configs(family.tiny)
        _tiny_folders[family.tiny] = written
    return written


def family_tokenizers(family: CheckpointFamily) -> dict[str, Any]:
    """The family's tokenizers, keyed as the pipeline takes them (nothing is fetched)."""
    if family.tiny == "tiny":
        from engine.diffusion.tiny import build_tiny_tokenizer

        return {"tokenizer": build_tiny_tokenizer()}
    from engine.diffusion.clip_tokenizer import clip_tokenizer

    names = ("tokenizer", "tokenizer_2")
    return {name: clip_tokenizer(pad) for name, pad in zip(names, family.pads, strict=False)}


def load_checkpoint(path: Path, detected: Detected, extra: dict[str, Any]) -> Any:
    """The diffusers pipeline of a checkpoint of a detected family, built offline."""
    import diffusers

    from engine.diffusion.loading import read_local

    family = detected.family
    folder = config_folder(family)
    pipeline_class = getattr(diffusers, family.pipeline_class)
    components = family_tokenizers(family)
    if detected.prediction is not None:
        scheduler_class = getattr(diffusers, _scheduler_class(folder))
        components["scheduler"] = scheduler_class.from_pretrained(
            str(folder), subfolder="scheduler", prediction_type=detected.prediction
        )
    return read_local(
        f"model file {path} ({family.label})",
        lambda: pipeline_class.from_single_file(
            str(path), config=str(folder), local_files_only=True, **components, **extra
        ),
    )


def _scheduler_class(folder: Path) -> str:
    import json

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return str(index["scheduler"][1])


def _spread(bias: Callable[[], torch.Tensor]) -> float | None:
    """ComfyUI's measure for SD 2.x v-prediction: the spread of one norm bias (v above 0.09)."""
    try:
        return float(torch.std(bias().float(), unbiased=False))
    except Exception:  # noqa: BLE001 - unreadable here is unreadable at load, which names the file
        return None


def torch_state(path: Path) -> dict[str, Any]:
    """A pickled checkpoint's state dict, memory-mapped (tensors only, no code runs)."""
    state: Any = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
    return state


def _write_tiny_configs(name: str) -> Path:
    """A tiny architecture's configs (the kl-vae variant: checkpoints hold a full VAE)."""
    global _tiny_root
    from engine.diffusion.tiny import build_tiny_pipeline

    if _tiny_root is None:
        _tiny_root = tempfile.TemporaryDirectory(prefix="hamba-tiny-configs-")
    folder = Path(_tiny_root.name) / name
    pipe = build_tiny_pipeline(0, 256, 256, vae="kl", name=name)
    pipe.save_config(str(folder))
    for component in ("unet", "vae", "scheduler"):
        getattr(pipe, component).save_config(str(folder / component))
    for encoder in ("text_encoder", "text_encoder_2"):
        model = getattr(pipe, encoder, None)
        if model is not None:
            model.config.save_pretrained(str(folder / encoder))
    return folder
