"""What a model is, read from its files before any weight loads: the basis for picking its kind.

A diffusers folder (or a cached hub snapshot) says it in ``model_index.json`` (``_class_name``);
a single checkpoint by its tensor names (:func:`engine.diffusion.single_file.detect_family`).
A hub id that is not cached is asked for its ``model_index.json`` only (a few hundred bytes),
and not at all when the hub is offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.diffusion.file_cache import FileCache
from engine.diffusion.loading import (
    MODEL_HINT,
    ModelSource,
    hub_offline,
    read_hub,
    resolve_model_source,
)
from engine.errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """A model reference and what it holds: the diffusers pipeline class its files describe
    (``None`` when they name none) and, for a single checkpoint, its family."""

    model: str
    source: ModelSource
    pipeline_class: str | None
    family: str | None = None

    def describe(self) -> str:
        what = self.pipeline_class or "no pipeline class"
        family = f", {self.family} checkpoint" if self.family else ""
        return f"a {self.source.kind} holding {what}{family}"


def identify_model(model: str, *, local_files_only: bool = False) -> ModelInfo:
    """Identify ``diffusion.model`` given by path or hub id (a registered name, such as the
    built-in tiny models, is taken by name before this is asked); ModelError naming it when it
    cannot be read."""
    source = resolve_model_source(model)
    if source.kind == "folder":
        return ModelInfo(model, source, pipeline_class_of(Path(source.location)))
    if source.kind == "file":
        from engine.diffusion.single_file import detect_family

        detected = detect_family(Path(source.location))
        family = detected.family
        return ModelInfo(model, source, family.pipeline_class, family.name)
    index = read_hub(
        "model",
        model,
        lambda local: _hub_index(model, local),
        local_files_only=local_files_only,
        hint=MODEL_HINT,
    )
    return ModelInfo(model, source, _class_name(index, f"model {model!r}: model_index.json"))


def pipeline_class_of(folder: Path) -> str | None:
    """The ``_class_name`` of a diffusers folder's ``model_index.json`` (ModelError naming the
    folder when there is none or it is unreadable)."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(
            f"model folder {folder}: no model_index.json, so not a diffusers pipeline folder "
            "(for a single checkpoint, point at its .safetensors file)"
        )
    return _class_name(index, f"model folder {folder}: model_index.json")


def _class_name(index: Path, what: str) -> str | None:
    try:
        return _CLASS_NAMES(index)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} is unreadable ({exc})") from exc


def _read_class_name(index: Path) -> str | None:
    data = json.loads(index.read_text(encoding="utf-8"))
    cls = data.get("_class_name") if isinstance(data, dict) else None
    return cls if isinstance(cls, str) else None


# a folder's index is read to pick the kind and again to check the folder before it loads
_CLASS_NAMES = FileCache(_read_class_name)


def _hub_index(repo: str, local: bool) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    if local or hub_offline(False):
        cached = try_to_load_from_cache(repo, "model_index.json")
        if not isinstance(cached, str):
            raise FileNotFoundError(f"{repo}/model_index.json is not in the local cache")
        return Path(cached)
    return Path(hf_hub_download(repo, "model_index.json"))
