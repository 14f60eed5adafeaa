"""Chroma-weighted prompt blends (torch is loaded on first use)."""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.prompt.interpolator import PromptInterpolator

__all__ = ["PromptInterpolator"]

__getattr__ = lazy_exports(__name__, {"PromptInterpolator": "engine.prompt.interpolator"})
