"""The live controls: one pydantic model, the single source of truth for the OSC surface.

Each field carries its OSC address, unit and access in ``json_schema_extra``; the dispatcher,
the validation, the OSCQuery namespace, the README table and the JSON export are all derived
from this model. Imports neither torch nor the engine.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.config import JsonDict

# the longest prompt a controller may send (base, negative and each chroma prompt)
PROMPT_MAX_LENGTH = 1000
Prompt = Annotated[str, StringConstraints(max_length=PROMPT_MAX_LENGTH)]

CHROMA_PROMPT_DEFAULTS: tuple[str, ...] = (
    "crimson red nebula",
    "molten orange lava",
    "golden sunlight through mist",
    "acid yellow neon",
    "emerald green forest canopy",
    "teal bioluminescent ocean",
    "cyan crystal ice cave",
    "deep blue midnight sky",
    "indigo aurora ribbons",
    "violet plasma storm",
    "magenta liquid chrome",
    "rose pink cherry blossoms",
)


BeatSourceChoice = Literal["auto", "audio", "link", "midi"]
"""What may drive the picture's beat (``auto``: the documented precedence)."""


def check_twelve_prompts(value: tuple[str, ...]) -> tuple[str, ...]:
    """One prompt per pitch class, C to B, or a ValueError that says how many came."""
    if len(value) != 12:
        raise ValueError(f"needs 12 prompts (one per pitch class), got {len(value)}")
    return value


def _osc(address: str, unit: str = "", access: str = "rw") -> JsonDict:
    return {"osc": address, "unit": unit, "access": access}


class LiveControls(BaseModel):
    """Every parameter a controller may change while the engine runs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    prompt: str = Field(
        "abstract flowing liquid light, vivid colors, high detail",
        max_length=PROMPT_MAX_LENGTH,
        description="the base prompt",
        json_schema_extra=_osc("/hamba/prompt"),
    )
    negative_prompt: str = Field(
        "",
        max_length=PROMPT_MAX_LENGTH,
        description="what the image should avoid (used with guidance)",
        json_schema_extra=_osc("/hamba/negative_prompt"),
    )
    chroma_prompts: tuple[Prompt, ...] = Field(
        CHROMA_PROMPT_DEFAULTS,
        description="one prompt per pitch class (0 = C .. 11 = B), blended by the chromagram",
        json_schema_extra=_osc("/hamba/prompt/chroma"),
    )
    chroma_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="share of the chroma prompts in the blend",
        json_schema_extra=_osc("/hamba/prompt/chroma_weight"),
    )
    blend: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="temporal blend ratio: weight of the previous frame's latent",
        json_schema_extra=_osc("/hamba/blend"),
    )
    preset: Literal["fast", "balanced", "quality"] = Field(
        "fast",
        description="speed/quality preset; sets the values it defines",
        json_schema_extra=_osc("/hamba/preset"),
    )
    strength: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="img2img feedback strength (how much each frame departs from the last)",
        json_schema_extra=_osc("/hamba/strength"),
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**31 - 1,
        description="seed of the latent walk's noise",
        json_schema_extra=_osc("/hamba/seed"),
    )
    reactivity: float = Field(
        1.0,
        ge=0.0,
        le=2.0,
        description="how strongly the music drives the image (0: not at all)",
        json_schema_extra=_osc("/hamba/reactivity"),
    )
    similarity: float = Field(
        0.98,
        ge=0.0,
        le=1.0,
        description="similarity filter threshold (frames more alike are skipped)",
        json_schema_extra=_osc("/hamba/similarity"),
    )
    coherence: bool = Field(
        True,
        description="temporal coherence on or off",
        json_schema_extra=_osc("/hamba/coherence"),
    )
    pause: bool = Field(
        False,
        description="freeze the image (frames keep flowing, unchanged)",
        json_schema_extra=_osc("/hamba/pause"),
    )
    beat_source: BeatSourceChoice = Field(
        "auto",
        description="what drives the picture's beat: audio analysis, Ableton Link or MIDI clock;"
        " auto: Link while following it, else a running MIDI clock ([midi] clock), else audio",
        json_schema_extra=_osc("/hamba/beat_source"),
    )

    _twelve = field_validator("chroma_prompts")(check_twelve_prompts)
