"""Music-synchronised latent walks (torch is loaded on first use)."""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.latent.generator import LatentGenerator

__all__ = ["LatentGenerator"]

__getattr__ = lazy_exports(__name__, {"LatentGenerator": "engine.latent.generator"})
