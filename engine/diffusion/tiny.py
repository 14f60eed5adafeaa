"""The built-in ``tiny`` model: a Stable-Diffusion-shaped pipeline with random weights.

Everything is built from config with a fixed seed, nothing is downloaded: a small
``UNet2DConditionModel``, a TAESD-shaped ``AutoencoderTiny`` (or a small ``AutoencoderKL``), a
2-layer ``CLIPTextModel`` and a WordPiece tokenizer whose vocabulary is made in code. The
weights are untrained, so the images are abstract textures, not pictures of the prompt; every
label a user meets says so (:data:`TINY_LABEL`). It exists to exercise every code path offline
and to make the CPU tests and the offline demo fast.
"""

from __future__ import annotations

import string
from typing import Any, Literal

import torch

TINY_MODEL = "tiny"
TINY_LABEL = "tiny (built-in, untrained random weights)"

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
# the decoder's output spread, in the vae's [-1, 1] image space: visible texture, no clipping
_TARGET_STD = 0.45


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
    """The tiny model's components, keyed as ``StableDiffusionPipeline`` expects them.

    ``sample_size`` is the latent size the unet advertises (height // 8); ``vae`` picks a
    TAESD-shaped ``AutoencoderTiny`` (the default) or a small ``AutoencoderKL`` (to exercise the
    full-VAE code paths). Same seed, same weights, on any machine.
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    vocab = tokenizer.get_vocab()
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        # diffusers' models are untyped for mypy: Any keeps the calls below checkable
        unet: Any = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TINY_HIDDEN,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        autoencoder: Any
        if vae == "tiny":
            autoencoder = AutoencoderTiny(
                encoder_block_out_channels=(16, 16, 16, 16),
                decoder_block_out_channels=(16, 16, 16, 16),
                num_encoder_blocks=(1, 1, 1, 1),
                num_decoder_blocks=(1, 1, 1, 1),
            )
        else:
            autoencoder = AutoencoderKL(
                block_out_channels=(16, 16, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4,
                layers_per_block=1,
                norm_num_groups=16,
                sample_size=sample_size * 8,
            )
        _variance_preserving_init(unet)
        _variance_preserving_init(autoencoder.decoder)
        text_encoder: Any = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=TINY_HIDDEN,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                projection_dim=TINY_HIDDEN,
                max_position_embeddings=TINY_MAX_TOKENS,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|pad|>"],
            )
        )
    finally:
        # building must not disturb the caller's global random stream
        torch.random.set_rng_state(generator_state)
    scheduler = few_step_scheduler()
    for module in (unet, autoencoder, text_encoder):
        module.eval().requires_grad_(False)
    _calibrate_decoder(autoencoder, seed)
    return {
        "unet": unet,
        "vae": autoencoder,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


def build_tiny_pipeline(
    seed: int = 0, height: int = 256, width: int = 256, *, vae: VaeKind = "tiny"
) -> Any:
    """A diffusers ``StableDiffusionPipeline`` over :func:`build_tiny_components`.

    Plain diffusers, so it can be called, saved with ``save_pretrained`` and loaded back through
    the engine's real loading path.
    """
    return assemble_pipeline(build_tiny_components(seed, max(height, width) // 8, vae=vae))


def few_step_scheduler() -> Any:
    """SD's noise schedule sampled sd-turbo's way: Euler ancestral from the last timestep."""
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
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
    """Scale and shift the decoder's last layer so a reference latent decodes to mid-grey texture.

    the reference is seeded noise at the one-step scale (std ~20), so the calibration is as
    deterministic as the weights. the shift is measured, not derived, because the two vae kinds
    map the last layer to pixels differently (TAESD doubles it and subtracts one).
    """
    decoder = autoencoder.decoder
    last = decoder.conv_out if hasattr(decoder, "conv_out") else decoder.layers[-1]
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
