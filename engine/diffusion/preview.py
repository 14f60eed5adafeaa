"""The built-in models' decoder: the linear latent-to-RGB preview, smoothly upsampled.

An untrained decoder turns any latent into colour noise and hides what the music does to the
latent. The tiny models decode instead with the fixed linear map that latent previews use for
Stable Diffusion latents (ComfyUI's ``latent_rgb_factors`` in ``comfy/latent_formats.py``: one
4x3 matrix for SD 1.x/2.x latents, one with a bias for SDXL's), applied to the scaled latent,
mapped to pixels as ``(v + 1) / 2`` and upsampled x8 bilinearly: a latent walk shows as colour
fields that move on beats and recolour as the prompt blend follows the chords.

The map is written into the weights of a TAESD-shaped ``AutoencoderTiny`` (plain diffusers, so
the tiny pipelines save, load and swap VAEs like real ones): the first convolution computes
``+rgb`` and ``-rgb`` in six channels (so the decoder's ReLUs pass both signs), every residual
block is zeroed to an identity, the upsamplers are bilinear, and the last convolution recombines
the signs. TAESD's input soft-clamp (``3 tanh(x / 3)``) is kept: ``scaling_factor`` brings the
latents the untrained unet makes (spread ``latent_spread``) to about unit spread first, where the
clamp is nearly linear. The encoder half stays random (seeded): img2img encodes with it.
"""

from __future__ import annotations

from typing import Any

import torch

# comfy/latent_formats.py: SD15.latent_rgb_factors and SDXL.latent_rgb_factors(_bias)
SD_LATENT_RGB: tuple[tuple[float, float, float], ...] = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD_LATENT_RGB_BIAS: tuple[float, float, float] = (0.0, 0.0, 0.0)
SDXL_LATENT_RGB: tuple[tuple[float, float, float], ...] = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_RGB_BIAS: tuple[float, float, float] = (0.1084, -0.0175, -0.0011)

_CHANNELS = 16  # per decoder stage, as the tiny TAESD shape has


def preview_autoencoder(
    factors: tuple[tuple[float, float, float], ...],
    bias: tuple[float, float, float],
    *,
    latent_spread: float,
) -> Any:
    """A TAESD-shaped ``AutoencoderTiny`` whose decoder is the linear preview (see the module)."""
    from diffusers import AutoencoderTiny

    # diffusers is untyped: through Any, the call stays checkable under --strict
    tiny_class: Any = AutoencoderTiny
    autoencoder: Any = tiny_class(
        encoder_block_out_channels=(_CHANNELS,) * 4,
        decoder_block_out_channels=(_CHANNELS,) * 4,
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        upsample_fn="bilinear",
        scaling_factor=float(latent_spread),
    )
    matrix = torch.tensor(factors, dtype=torch.float32).T  # (3, 4)
    offset = torch.tensor(bias, dtype=torch.float32)
    layers = list(autoencoder.decoder.layers)
    convs = [m for m in layers if isinstance(m, torch.nn.Conv2d)]
    first, last = convs[0], convs[-1]
    first_bias, last_bias = first.bias, last.bias
    # both convolutions have biases
    assert first_bias is not None
    assert last_bias is not None
    with torch.no_grad():
        for module in layers:
            for parameter in module.parameters():
                parameter.zero_()
        # +rgb in channels 0-2, -rgb in 3-5 (centre taps only: a per-pixel map)
        first.weight[0:3, :, 1, 1] = matrix
        first.weight[3:6, :, 1, 1] = -matrix
        first_bias[0:3] = offset
        first_bias[3:6] = -offset
        # the stage convolutions between upsamplers pass the six channels through
        for conv in convs[1:-1]:
            for channel in range(6):
                conv.weight[channel, channel, 1, 1] = 1.0
        # pixels in [0, 1] = (v + 1) / 2; the decoder then maps them to [-1, 1]
        for colour in range(3):
            last.weight[colour, colour, 1, 1] = 0.5
            last.weight[colour, colour + 3, 1, 1] = -0.5
        last_bias.fill_(0.5)
    return autoencoder
