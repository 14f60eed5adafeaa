"""Diffusers pipelines written back in the original single-file layout (LDM for SD 1.x/2.x, SGM
for SDXL), the way checkpoints from model sites come: what the single-file tests load.

Written from the layouts themselves (the CompVis/Stability repositories' module names), not from
diffusers' converter, so that loading them back tests the converter rather than mirroring it:

- unet under ``model.diffusion_model.``: ``input_blocks.N`` (the first conv, then per down
  block ``layers`` resnet+attention pairs and a downsampler ``op``), ``middle_block.0-2``,
  ``output_blocks.N`` (per up block ``layers + 1`` pairs, the upsampler after the attention),
  resnets as ``in_layers``/``emb_layers``/``out_layers``/``skip_connection``, SDXL's added
  conditioning as ``label_emb``;
- vae under ``first_stage_model.``: ``encoder.down.N.block.M``, ``decoder.up.N`` numbered from
  the bottom, mid attention as 1x1 convolutions ``q``/``k``/``v``/``proj_out``;
- CLIP (SD 1.x, SDXL's first encoder) in transformers' layout under
  ``cond_stage_model.transformer.`` / ``conditioner.embedders.0.transformer.``; OpenCLIP (SD 2.x,
  SDXL's second) under ``cond_stage_model.model.`` / ``conditioner.embedders.1.model.`` with
  fused ``in_proj`` attention weights and a ``(width, dim)`` ``text_projection``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

State = dict[str, torch.Tensor]

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)


def original_layout(pipe: Any) -> State:
    """The whole pipeline's weights as one single-file state dict."""
    state: State = {}
    state.update(_prefixed("model.diffusion_model.", unet_layout(pipe.unet)))
    state.update(_prefixed("first_stage_model.", vae_layout(pipe.vae)))
    text_2 = getattr(pipe, "text_encoder_2", None)
    if text_2 is not None:
        state.update(
            _prefixed("conditioner.embedders.0.transformer.", clip_layout(pipe.text_encoder))
        )
        state.update(_prefixed("conditioner.embedders.1.model.", open_clip_layout(text_2)))
    elif pipe.text_encoder.config.hidden_act == "gelu":  # OpenCLIP (SD 2.x)
        state.update(_prefixed("cond_stage_model.model.", open_clip_layout(pipe.text_encoder)))
    else:
        state.update(_prefixed("cond_stage_model.transformer.", clip_layout(pipe.text_encoder)))
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def unet_layout(unet: Any) -> State:
    layers = int(unet.config.layers_per_block)
    has_attention = [
        bool(block.attentions) if hasattr(block, "attentions") else False
        for block in unet.up_blocks
    ]
    out: State = {}
    for key, value in unet.state_dict().items():
        out[_unet_key(key, layers, has_attention)] = value
    return out


def _unet_key(key: str, layers: int, up_attention: list[bool]) -> str:
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for new, old in fixed.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (layers + 1) + j}.0.{_resnet(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (layers + 1) + j}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * (layers + 1) + j}.0.{_resnet(rest)}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        b, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * (layers + 1) + j}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        b = int(m[1])
        slot = 2 if up_attention[b] else 1
        return f"output_blocks.{b * (layers + 1) + layers}.{slot}.conv.{m[2]}"
    raise KeyError(f"no original name for unet weight {key}")


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(f"no original name for resnet weight {rest}")


def vae_layout(vae: Any) -> State:
    blocks = len(vae.config.up_block_types)
    out: State = {}
    for key, value in vae.state_dict().items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", new):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", new):
            names = {
                "group_norm": "norm",
                "to_q": "q",
                "to_k": "k",
                "to_v": "v",
                "to_out.0": "proj_out",
            }
            part, _, tail = m[2].rpartition(".")
            new = f"{m[1]}.mid.attn_1.{names[part]}.{tail}"
            if value.ndim == 2:  # the original attention uses 1x1 convolutions
                value = value[:, :, None, None]
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", new):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new):
            new = f"decoder.up.{blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", new):
            new = f"decoder.up.{blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        out[new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def _text_state(encoder: Any) -> State:
    """transformers' CLIP weights with the ``text_model.`` prefix (5.6+ flattened it away)."""
    out: State = {}
    for key, value in encoder.state_dict().items():
        if key.startswith(("text_model.", "text_projection.")):
            out[key] = value
        else:
            out["text_model." + key] = value
    return out


def clip_layout(encoder: Any) -> State:
    return _text_state(encoder)


def open_clip_layout(encoder: Any) -> State:
    state = _text_state(encoder)
    out: State = {
        "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
    }
    projection = state.pop("text_projection.weight", None)
    if projection is not None:
        out["text_projection"] = projection.T
    layers = int(encoder.config.num_hidden_layers)
    for i in range(layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat(
                [state.pop(src + f"self_attn.{p}_proj.{part}") for p in ("q", "k", "v")]
            )
            out[dst + f"attn.out_proj.{part}"] = state.pop(src + f"self_attn.out_proj.{part}")
            out[dst + f"ln_1.{part}"] = state.pop(src + f"layer_norm1.{part}")
            out[dst + f"ln_2.{part}"] = state.pop(src + f"layer_norm2.{part}")
            out[dst + f"mlp.c_fc.{part}"] = state.pop(src + f"mlp.fc1.{part}")
            out[dst + f"mlp.c_proj.{part}"] = state.pop(src + f"mlp.fc2.{part}")
    leftover = [k for k in state if not k.endswith("position_ids")]
    if leftover:
        raise KeyError(f"no OpenCLIP name for {leftover[:3]}")
    return out


def _prefixed(prefix: str, state: State) -> State:
    return {prefix + k: v for k, v in state.items()}
