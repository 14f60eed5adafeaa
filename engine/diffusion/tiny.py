"""The built-in tiny models: Stable-Diffusion-shaped pipelines with random weights.

Everything is built from config with a fixed seed, nothing is downloaded. Three shapes, one per
family the engine runs:

- ``tiny`` (SD 1.x-shaped): a small ``UNet2DConditionModel``, a 2-layer ``CLIPTextModel`` and a
  WordPiece tokenizer whose vocabulary is made in code; epsilon prediction.
- ``tiny-sd2`` (SD 2.x-shaped): linear attention projections, a wider OpenCLIP-style text
  encoder (GELU), CLIP's real tokenizer padding with ``!`` and v-prediction.
- ``tiny-sdxl`` (SDXL-shaped): two text encoders (the second with a projection: pooled
  embeddings), a unet with ``addition_embed_type="text_time"`` (pooled embeddings and
  ``add_time_ids``), CLIP's real tokenizers, ``force_zeros_for_empty_prompt``.

They decode with the linear latent-to-RGB preview (:mod:`engine.diffusion.preview`), so a latent
walk shows as moving colour fields, or (``vae="kl"``) with a small random ``AutoencoderKL`` that
exercises the full-VAE paths and the single-file layout. The weights are untrained, so the images
are abstract, not pictures of the prompt; every label a user meets says so (:func:`tiny_label`).
They exist to exercise every code path offline and to make the CPU tests and the demo fast.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from engine.diffusion.clip_tokenizer import CLIP_VOCAB_SIZE, OPENCLIP_PAD, clip_tokenizer
from engine.diffusion.preview import (
    SD_LATENT_RGB,
    SD_LATENT_RGB_BIAS,
    SDXL_LATENT_RGB,
    SDXL_LATENT_RGB_BIAS,
    preview_autoencoder,
)

TINY_MODEL = "tiny"
TINY_SD2_MODEL = "tiny-sd2"
TINY_SDXL_MODEL = "tiny-sdxl"
TINY_LABEL = "tiny (built-in, untrained random weights)"
TINY_LABELS: dict[str, str] = {
    TINY_MODEL: TINY_LABEL,
    TINY_SD2_MODEL: "tiny-sd2 (built-in SD 2.x-shaped, v-prediction, untrained random weights)",
    TINY_SDXL_MODEL: "tiny-sdxl (built-in SDXL-shaped, untrained random weights)",
}
TINY_MODELS: tuple[str, ...] = tuple(TINY_LABELS)

# the text encoder's width; the unet attends to it
TINY_HIDDEN = 32
TINY_MAX_TOKENS = 77
# whole words the tokenizer knows; anything else is spelled out in characters, so every
# prompt still maps to its own token sequence
_WORDS: tuple[str, ...] = (
    "a", "an", "the", "of", "in", "on", "with", "and", "through", "under", "over", "into",
    "abstract", "flowing", "liquid", "light", "vivid", "colors", "colours", "high", "detail",
    "red", "orange", "yellow", "green", "teal", "cyan", "blue", "indigo", "violet", "magenta",
    "pink", "rose", "gold", "golden", "silver", "black", "white", "dark", "bright", "neon",
    "acid", "crimson", "emerald", "deep", "midnight", "molten", "crystal", "plasma", "chrome",
    "nebula", "lava", "sunlight", "mist", "forest", "canopy", "ocean", "ice", "cave", "sky",
    "aurora", "ribbons", "storm", "cherry", "blossoms", "bioluminescent", "fire", "water",
    "smoke", "clouds", "stars", "space", "city", "night", "glow", "waves", "fractal",
    "geometric", "psychedelic", "surreal", "dream", "cosmic", "electric", "organic", "metal",
)  # fmt: skip
_SPECIALS = ("<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>")
_CHARS = string.ascii_lowercase + string.digits + string.punctuation

VaeKind = Literal["tiny", "kl"]
# the kl decoder's output spread, in the vae's [-1, 1] image space: visible texture, no clipping
_TARGET_STD = 0.45
# the spread of the clean latents the untrained unets predict in one step (measured: about 19
# for the epsilon models, whose clean latent is mostly rescaled noise, 0.8 for v-prediction):
# the preview decoder divides by it before its soft clamp
_EPSILON_SPREAD = 18.0
_V_SPREAD = 1.0
# how much louder than variance-preserving the cross attention speaks (see _unet)
_PROMPT_GAIN = 8.0
# the sdxl-shaped unet's time-id embedding width (real sdxl: 256)
TINY_TIME_EMBED_DIM = 8
# the sdxl-shaped model's second (pooled) text encoder's width
TINY_XL_HIDDEN_2 = 48


def is_tiny_model(name: str) -> bool:
    """Whether ``name`` is one of the built-in tiny models."""
    return name in TINY_LABELS


def tiny_label(name: str) -> str:
    """What users are told a built-in model is (always says untrained)."""
    return TINY_LABELS[name]


def tiny_vocabulary() -> dict[str, int]:
    """The tokenizer's vocabulary: specials, characters, word-piece continuations, words."""
    tokens = [*_SPECIALS, *_CHARS, *(f"##{c}" for c in _CHARS)]
    tokens += [w for w in _WORDS if w not in tokens]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_tokenizer() -> Any:
    """A CLIP-like fast tokenizer (lower-case word pieces, start/end tokens, 77 positions)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocabulary()
    core = Tokenizer(WordPiece(vocab, unk_token="<|unk|>", max_input_chars_per_word=64))
    core.normalizer = normalizers.Sequence(
        [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        unk_token="<|unk|>",
        pad_token="<|pad|>",
        model_max_length=TINY_MAX_TOKENS,
    )


def build_tiny_components(
    seed: int = 0, sample_size: int = 32, *, vae: VaeKind = "tiny"
) -> dict[str, Any]:
    """The ``tiny`` model's components, keyed as ``StableDiffusionPipeline`` expects them.

    ``sample_size`` is the latent size the unet advertises (height // 8); ``vae`` picks the
    linear preview decoder (the default) or a small ``AutoencoderKL`` (to exercise the full-VAE
    code paths). Same seed, same weights, on any machine.
    """
    tokenizer = build_tiny_tokenizer()
    vocab = tokenizer.get_vocab()

    def text() -> dict[str, Any]:
        return {"text_encoder": _clip_text(TINY_HIDDEN, act="quick_gelu", vocab=vocab)}

    components = _seeded(seed, lambda: {**_unet(sample_size), **text(), **_vae(vae, sample_size)})
    return _finish(components, seed, vae, sd_latents=True, tokenizer=tokenizer)


def build_tiny_sd2_components(
    seed: int = 0, sample_size: int = 32, *, vae: VaeKind = "tiny"
) -> dict[str, Any]:
    """``tiny-sd2``'s components: SD 2.x's shape (see the module docstring), v-prediction."""

    def text() -> dict[str, Any]:
        return {"text_encoder": _clip_text(48, act="gelu")}

    components = _seeded(
        seed,
        lambda: {
            **_unet(sample_size, cross_attention_dim=48, linear=True),
            **text(),
            **_vae(vae, sample_size),
        },
    )
    return _finish(
        components,
        seed,
        vae,
        sd_latents=True,
        tokenizer=clip_tokenizer(OPENCLIP_PAD),
        prediction="v_prediction",
    )


def build_tiny_sdxl_components(
    seed: int = 0, sample_size: int = 32, *, vae: VaeKind = "tiny"
) -> dict[str, Any]:
    """``tiny-sdxl``'s components, keyed as ``StableDiffusionXLPipeline`` expects them."""
    from transformers import CLIPTextModelWithProjection

    def text() -> dict[str, Any]:
        return {
            "text_encoder": _clip_text(TINY_HIDDEN, act="quick_gelu"),
            # wider than the first, as in SDXL (768 and 1280): the single-file layout tells the
            # two encoders apart by width
            "text_encoder_2": _clip_text(
                TINY_XL_HIDDEN_2, act="gelu", model=CLIPTextModelWithProjection
            ),
        }

    def build() -> dict[str, Any]:
        unet = _unet(
            sample_size,
            cross_attention_dim=TINY_HIDDEN + TINY_XL_HIDDEN_2,
            linear=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=TINY_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=6 * TINY_TIME_EMBED_DIM + TINY_XL_HIDDEN_2,
            transformer_layers_per_block=(1, 2),
        )
        return {**unet, **text(), **_vae(vae, sample_size)}

    components = _finish(
        _seeded(seed, build), seed, vae, sd_latents=False, tokenizer=clip_tokenizer()
    )
    components["tokenizer_2"] = clip_tokenizer(OPENCLIP_PAD)
    return components


def build_tiny_pipeline(
    seed: int = 0,
    height: int = 256,
    width: int = 256,
    *,
    vae: VaeKind = "tiny",
    name: str = TINY_MODEL,
) -> Any:
    """The diffusers pipeline of the built-in model ``name`` (``tiny``, ``tiny-sd2``,
    ``tiny-sdxl``): a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``.

    Plain diffusers, so it can be called, saved with ``save_pretrained`` and loaded back through
    the engine's real loading path.
    """
    builders = {
        TINY_MODEL: build_tiny_components,
        TINY_SD2_MODEL: build_tiny_sd2_components,
        TINY_SDXL_MODEL: build_tiny_sdxl_components,
    }
    if name not in builders:
        raise ValueError(f"no built-in model {name!r} ({', '.join(builders)})")
    components = builders[name](seed, max(height, width) // 8, vae=vae)
    if name == TINY_SDXL_MODEL:
        return assemble_xl_pipeline(components)
    return assemble_pipeline(components)


def _seeded(seed: int, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Build under a fixed seed without disturbing the caller's global random stream."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return build()
    finally:
        torch.random.set_rng_state(generator_state)


def _unet(
    sample_size: int, *, cross_attention_dim: int = TINY_HIDDEN, linear: bool = False, **extra: Any
) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel

    # diffusers' models are untyped for mypy: Any keeps the calls below checkable
    unet: Any = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(2, 4) if linear else 8,
        use_linear_projection=linear,
        norm_num_groups=32,
        **extra,
    )
    _variance_preserving_init(unet)
    # untrained cross attention averages 77 mostly-padding tokens, which dilutes the prompt to
    # nearly nothing: a larger output projection lets the prompt (and the chroma blend) show
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn2.to_out.0"):
                module.weight.mul_(_PROMPT_GAIN)
    return {"unet": unet}


def _clip_text(
    hidden: int, *, act: str, model: Any = None, vocab: Mapping[str, int] | None = None
) -> Any:
    """A 2-layer CLIP text encoder over CLIP's real 49 408-token vocabulary, or over ``vocab``
    (the ``tiny`` tokenizer's, with its own special tokens)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if vocab is None:
        size, bos, eos, pad = CLIP_VOCAB_SIZE, CLIP_VOCAB_SIZE - 2, CLIP_VOCAB_SIZE - 1, 0
    else:
        size = len(vocab)
        bos, eos, pad = (vocab[t] for t in ("<|startoftext|>", "<|endoftext|>", "<|pad|>"))
    config = CLIPTextConfig(
        vocab_size=size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=hidden,
        hidden_act=act,
        max_position_embeddings=TINY_MAX_TOKENS,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return (model or CLIPTextModel)(config)


def _vae(kind: VaeKind, sample_size: int) -> dict[str, Any]:
    if kind == "tiny":
        return {}  # the preview decoder is fixed, not random: made in _finish
    from diffusers import AutoencoderKL

    autoencoder: Any = AutoencoderKL(
        block_out_channels=(16, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=sample_size * 8,
    )
    _variance_preserving_init(autoencoder.decoder)
    return {"vae": autoencoder}


def _finish(
    components: dict[str, Any],
    seed: int,
    vae: VaeKind,
    *,
    sd_latents: bool,
    tokenizer: Any,
    prediction: str = "epsilon",
) -> dict[str, Any]:
    if vae == "tiny":
        factors, bias = (
            (SD_LATENT_RGB, SD_LATENT_RGB_BIAS)
            if sd_latents
            else (SDXL_LATENT_RGB, SDXL_LATENT_RGB_BIAS)
        )
        # the encoder half is random: seed it like the rest
        spread = _V_SPREAD if prediction == "v_prediction" else _EPSILON_SPREAD
        components["vae"] = _seeded(
            seed, lambda: {"vae": preview_autoencoder(factors, bias, latent_spread=spread)}
        )["vae"]
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in components:
            components[name].eval().requires_grad_(False)
    if vae == "kl":
        _calibrate_decoder(components["vae"], seed)
    components["tokenizer"] = tokenizer
    components["scheduler"] = few_step_scheduler(prediction)
    return components


def few_step_scheduler(prediction: str = "epsilon") -> Any:
    """SD's noise schedule sampled sd-turbo's way: Euler ancestral from the last timestep."""
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
        prediction_type=prediction,
    )


def assemble_pipeline(components: dict[str, Any]) -> Any:
    """A ``StableDiffusionPipeline`` of unet, vae, text encoder, tokenizer and scheduler."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def assemble_xl_pipeline(components: dict[str, Any]) -> Any:
    """A ``StableDiffusionXLPipeline`` of unet, vae, both text encoders and tokenizers, scheduler."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        **components, force_zeros_for_empty_prompt=True, add_watermarker=False
    )


def _variance_preserving_init(module: torch.nn.Module) -> None:
    """He-normal weights and zero biases for every conv and linear layer.

    pytorch's default init shrinks activations layer by layer, so an untrained decoder paints
    a flat dark frame and the prompt barely reaches the image; variance-preserving weights
    keep the latent's and the prompt's structure alive to the last layer.
    """
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            fan_in = layer.weight[0].numel()
            gain = 2.0 if isinstance(layer, torch.nn.Conv2d) else 1.0
            with torch.no_grad():
                layer.weight.normal_(0.0, (gain / fan_in) ** 0.5)
                if layer.bias is not None:
                    layer.bias.zero_()


def _calibrate_decoder(autoencoder: Any, seed: int) -> None:
    """Scale and shift the kl decoder's last layer so a reference latent decodes to mid-grey
    texture.

    the reference is seeded noise at the one-step scale (std ~20), so the calibration is as
    deterministic as the weights. the shift is measured through the decoder (how far a unit of
    bias moves the output), not assumed.
    """
    last = autoencoder.decoder.conv_out
    reference = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed)) * 20

    def channel_stats() -> tuple[torch.Tensor, torch.Tensor]:
        image = autoencoder.decode(reference).sample
        return image.mean(dim=(0, 2, 3)), image.std(dim=(0, 2, 3)).clamp_min(1e-6)

    with torch.no_grad():
        _, std = channel_stats()
        last.weight.mul_((_TARGET_STD / std).view(-1, 1, 1, 1))
        mean, _ = channel_stats()
        last.bias.add_(1.0)
        slope = channel_stats()[0] - mean
        last.bias.sub_(1.0 + mean / slope)
