"""Which models are on this machine and whether they fit it, read from file headers only.

Models are found in the Hugging Face hub cache (diffusers snapshots with a ``model_index.json``)
and under the paths given (a diffusers folder, a checkpoint file, or a folder holding either).
For each: its kind (as :func:`~engine.diffusion.base.model_kind` would pick it), its parameter
count and stored dtype (from the safetensors headers; a ``.ckpt`` is memory-mapped), its size on
disk, and whether its weights fit the device's memory at the dtype the engine would run them in
(half precision on a GPU, float32 on the CPU), with room for activations.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.diffusion.loading import CHECKPOINT_SUFFIXES
from engine.errors import HambaError

# the components whose weights a frame uses (safety checkers and image encoders are not loaded)
_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
# activations, the TAESD and the allocator's slack on top of the weights
_HEADROOM = 1.3


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk."""

    model: str  # what --model takes: a path or a hub id
    where: str  # "cache", "folder" or "file"
    kind: str  # the model kind, or "?" with the reason in ``problem``
    parameters: int
    dtype: str
    disk_bytes: int
    fits: bool
    problem: str = ""


@dataclass(frozen=True)
class DeviceBudget:
    """The device models would run on and the memory it offers them."""

    device: str
    run_dtype: torch.dtype
    memory_bytes: int


def device_budget(device: str = "auto") -> DeviceBudget:
    """The resolved device, the dtype the engine picks there, and its memory (GPU total, else
    the memory the system has available now)."""
    from engine.diffusion.device import resolve_device, resolve_dtype

    resolved = resolve_device(device)
    dtype = resolve_dtype("auto", resolved)
    if resolved.type == "cuda":
        memory = int(torch.cuda.get_device_properties(resolved).total_memory)
    else:
        memory = available_memory()
    return DeviceBudget(str(resolved), dtype, memory)


def available_memory() -> int:
    """Bytes of system memory available now (``MemAvailable``), or the physical total."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def find_models(paths: Iterable[str | Path], *, include_cache: bool = True) -> list[Path | str]:
    """Model references: cached hub ids (diffusers snapshots), then what the paths hold."""
    found: list[Path | str] = []
    if include_cache:
        found.extend(cached_hub_models())
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file() or (path / "model_index.json").is_file():
            found.append(path)
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                is_checkpoint = child.is_file() and child.suffix.lower() in CHECKPOINT_SUFFIXES
                if is_checkpoint or (child / "model_index.json").is_file():
                    found.append(child)
    return found


def cached_hub_models() -> list[str]:
    """Hub ids in the local cache whose snapshot is a diffusers pipeline."""
    from huggingface_hub import CacheNotFound, scan_cache_dir

    try:
        info = scan_cache_dir()
    except (CacheNotFound, ValueError, OSError):  # none yet, a file in its place, unreadable
        return []
    repos = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        if any((rev.snapshot_path / "model_index.json").is_file() for rev in repo.revisions):
            repos.append(repo.repo_id)
    return repos


def describe_model(model: Path | str, budget: DeviceBudget) -> ModelEntry:
    """Kind, size and fit of one model; a model that cannot be read says why."""
    from engine.config import DiffusionConfig
    from engine.diffusion.base import model_kind

    location, where = _location(model)
    try:
        kind = model_kind(DiffusionConfig(model=str(model), local_files_only=True))
        problem = ""
    except HambaError as exc:
        kind, problem = "?", str(exc)
    files = _weight_files(location)
    parameters, dtype = _header_stats(files)
    disk = sum(f.stat().st_size for f in _all_files(location))
    need = parameters * torch.finfo(budget.run_dtype).bits // 8 * _HEADROOM
    return ModelEntry(
        model=str(model),
        where=where,
        kind=kind,
        parameters=parameters,
        dtype=dtype,
        disk_bytes=disk,
        fits=not problem and parameters > 0 and need <= budget.memory_bytes,
        problem=problem,
    )


def _location(model: Path | str) -> tuple[Path, str]:
    if isinstance(model, Path):
        return model, "file" if model.is_file() else "folder"
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=True)), "cache"


def _weight_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    files = []
    for component in _COMPONENTS:
        folder = location / component
        if not folder.is_dir():
            continue
        weights = sorted(folder.glob("*.safetensors"))
        # one precision per component: the plain file unless only a variant (fp16) is there
        plain = [w for w in weights if w.name.count(".") == 1]
        files.extend(plain or weights[:1])
    return files


def _all_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    return [p.resolve() for p in location.rglob("*") if p.is_file()]


def _header_stats(files: list[Path]) -> tuple[int, str]:
    """Parameter count and the most common stored dtype, from headers (no weights read)."""
    from engine.diffusion.single_file import read_header

    count = 0
    dtypes: Counter[str] = Counter()
    for file in files:
        try:
            header = read_header(file)
        except Exception:  # noqa: BLE001 - unreadable weights show as 0 parameters; the kind says why
            continue
        for key, shape in header.shapes.items():
            numel = math.prod(shape)
            count += numel
            dtypes[header.dtypes[key]] += numel
    return count, dtypes.most_common(1)[0][0] if dtypes else "?"
