"""SDXL (SDXL-Turbo, SDXL-Lightning, Hyper-SDXL, LCM-LoRA SDXL, ``tiny-sdxl``): the ``sdxl`` kind.

The same driver as SD 1.x/2.x (:class:`~engine.diffusion.sd15.LatentDiffusionPipeline`: schedule tables,
fused LoRA, TAESD, traced CPU unet, CUDA graphs) with what SDXL adds, as
``StableDiffusionXLPipeline`` computes it:

- two tokenizers and text encoders; the token embeddings are both encoders' penultimate hidden
  states side by side, the pooled embedding is the second encoder's projected output: a prompt
  becomes a :class:`~engine.diffusion.conditioning.TextConditioning`;
- ``add_time_ids`` = (original height, width, crop top, left, target height, width): the frame
  size, uncropped, following the inference size (made again when it changes);
- an empty negative prompt is zeros (``force_zeros_for_empty_prompt``), as diffusers does;
- TAESD for SDXL latents (``madebyollin/taesdxl``) unless ``diffusion.tiny_vae`` names another;
  SDXL's full VAE decodes in float32 when the model runs in float16 (it overflows otherwise).
"""

from __future__ import annotations

import torch

from engine.diffusion.base import prompt_texts
from engine.diffusion.conditioning import Conditioning, TextConditioning
from engine.diffusion.sd15 import LatentDiffusionPipeline
from engine.errors import RenderError


class SDXLPipeline(LatentDiffusionPipeline[TextConditioning]):
    """An SDXL-layout diffusers model (or the built-in ``tiny-sdxl``) as a frame renderer.

    ``encode_prompt`` returns a ``TextConditioning`` (token and pooled embeddings); every
    method that takes prompt embeddings wants one (a bare tensor lacks the pooled part).
    """

    is_xl = True

    def supports_pooled_embeds(self) -> bool:
        return True

    def encode_prompt(self, prompt: str | list[str]) -> TextConditioning:
        texts = prompt_texts(prompt)
        pipe = self.pipe
        hidden: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        with torch.inference_mode():
            for tokenizer, encoder in (
                (pipe.tokenizer, pipe.text_encoder),
                (pipe.tokenizer_2, pipe.text_encoder_2),
            ):
                ids = self._token_ids(tokenizer, encoder, texts)
                output = encoder(ids, output_hidden_states=True)
                # the projected pooled output of the last encoder (diffusers' rule)
                if output[0].ndim == 2:
                    pooled = output[0]
                hidden.append(output.hidden_states[-2])
        if pooled is None:
            raise RenderError(
                f"model {self.model_label}: its second text encoder gives no pooled output"
            )
        return TextConditioning(torch.cat(hidden, dim=-1).to(self.dtype), pooled.to(self.dtype))

    def _encode_negative(self, text: str) -> TextConditioning:
        if text == "" and bool(getattr(self.pipe.config, "force_zeros_for_empty_prompt", False)):
            empty = self.encode_prompt("")
            assert empty.pooled is not None
            return TextConditioning(torch.zeros_like(empty.embeds), torch.zeros_like(empty.pooled))
        return self.encode_prompt(text)

    def _check_conditioning(self, prompt_embeds: Conditioning, batch: int) -> TextConditioning:
        if not isinstance(prompt_embeds, TextConditioning) or prompt_embeds.pooled is None:
            raise RenderError(
                "prompt_embeds: SDXL needs pooled embeddings too: pass what encode_prompt "
                "returns (a TextConditioning), not a bare tensor"
            )
        cond = super()._check_conditioning(prompt_embeds, batch)
        width = self._pooled_width()
        pooled = cond.pooled
        assert pooled is not None  # checked above
        if pooled.shape[1] != width:
            raise RenderError(
                f"pooled prompt embeddings: expected (n, {width}), got {tuple(pooled.shape)}"
            )
        return cond

    def _pooled_width(self) -> int:
        return int(self.pipe.text_encoder_2.config.projection_dim)

    # the last frame size's time ids: constant while the size is, and asked for at every call
    _time_ids_of: tuple[tuple[object, ...], torch.Tensor] | None = None

    def _time_ids(self) -> torch.Tensor:
        inference = self.inference_config
        key = (inference.height, inference.width, self.device, self.dtype)
        if self._time_ids_of is None or self._time_ids_of[0] != key:
            size = [inference.height, inference.width]
            ids = torch.tensor([[*size, 0, 0, *size]], device=self.device, dtype=self.dtype)
            self._time_ids_of = (key, ids)
        return self._time_ids_of[1]
