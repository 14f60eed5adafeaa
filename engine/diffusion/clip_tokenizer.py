"""CLIP's text tokenizer, shipped: the one SD 1.x/2.x and SDXL use, built with no download.

The package holds OpenAI's byte-pair-encoding file (``data/clip/bpe_simple_vocab_16e6.txt.gz``,
MIT, see ``data/clip/LICENSE``). The vocabulary follows from it as CLIP's own tokenizer builds
it: the 256 byte symbols, the same with the end-of-word mark ``</w>``, one token per merge (the
first 48 894), then ``<|startoftext|>`` and ``<|endoftext|>``: 49 408 tokens, the ids the hub's
``vocab.json`` files hold. They are written once per process as ``vocab.json`` and
``merges.txt`` into a private folder and read by transformers' ``CLIPTokenizer``.

SD 1.x and SDXL's first tokenizer pad with ``<|endoftext|>``; SD 2.x and SDXL's second
(OpenCLIP) pad with ``!``: the padding token changes the embeddings of the padded positions, so
each family asks for its own.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import ModelError

BPE_FILE = Path(__file__).parent / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
OPENCLIP_PAD = "!"
CLIP_VOCAB_SIZE = 49408
CLIP_MAX_TOKENS = 77
_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
_folder: tempfile.TemporaryDirectory[str] | None = None


def byte_symbols() -> list[str]:
    """The characters that stand for the 256 bytes, in vocabulary order (GPT-2's byte-level
    alphabet: the printable bytes as themselves first, then the rest mapped above 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's vocabulary (token -> id) and merges (``"a b"`` lines), from the shipped BPE file."""
    try:
        lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"CLIP tokenizer: the packaged {BPE_FILE} is unreadable ({exc}); reinstall hambametal "
            "or fetch tokenizer/vocab.json and tokenizer/merges.txt of "
            "stable-diffusion-v1-5/stable-diffusion-v1-5 once"
        ) from exc
    merges = tuple(lines[1 : 1 + _MERGES])
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in merges)]
    tokens += [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer_folder() -> Path:
    """A folder with CLIP's ``vocab.json`` and ``merges.txt`` (written once per process)."""
    global _folder
    if _folder is None:
        folder = tempfile.TemporaryDirectory(prefix="hamba-clip-")
        vocab, merges = clip_vocabulary()
        root = Path(folder.name)
        (root / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (root / "merges.txt").write_text(
            "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
        )
        _folder = folder
    return Path(_folder.name)


def clip_tokenizer(pad_token: str = EOS) -> Any:
    """transformers' ``CLIPTokenizer`` over the shipped vocabulary (77 positions)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        str(clip_tokenizer_folder()),
        pad_token=pad_token,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=CLIP_MAX_TOKENS,
    )
