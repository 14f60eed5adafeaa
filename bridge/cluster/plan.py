"""Cutting songs into chunks that render in parallel and join without a visible seam.

A chunk is a run of frames ``start..stop-1`` of one song that a worker renders from a clean
state beginning at ``warmup_from``: the frames before ``start`` are rendered and dropped, so
temporal coherence, the stream batch and the similarity filter arrive at ``start`` as if the
song had been rendered in one go (the latent walk and the chroma smoothing depend on the music
alone and are exact anyway).

The plan depends on the song's length and the settings only, never on how many workers there
are: one worker or fifty render the same frames.

How much warm-up the seam needs follows from the stream settings (:func:`warmup_frames`):

- temporal coherence blends each latent with the previous one by ``blend * (1 - energy)``, so
  a cold start's influence after ``k`` frames is at most ``blend ** k``; the warm-up makes
  that at most :data:`SEAM_TOLERANCE` (at energy 0, the worst case);
- a multi-step stream batch holds ``steps - 1`` frames in flight: that many more;
- the similarity filter may hold a frame up to ``similarity_max_skip`` frames: that many
  more, plus one;
- img2img feedback feeds every frame's picture into the next, and a cold start never fades
  (measured: 12 dB PSNR at the seam after 48 warm-up frames as after none): such songs are not
  split, each renders whole on one worker.

Measured (``python -m benchmarks.bench_cluster --parts seams``, BENCHMARKS.md): with this rule
the worst frame at or after a seam is 67 to 87 dB PSNR against the unsplit render, over the
presets and blends 0.2 to 0.9 on quiet music; 4 warm-up frames would already pass 40 dB at the
presets, not at a blend of 0.7 or more.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from engine.config import PipelineConfig
from engine.errors import ConfigError

# a cold start may leave at most this share of its latent in the frame at the seam
SEAM_TOLERANCE = 1e-4
# a song at most this many chunks long stays whole (a short tail joins the chunk before it)
_WHOLE_BELOW = 1.5


@dataclass(frozen=True)
class Chunk:
    """Frames ``start..stop-1`` of song ``song``, rendered from a clean state at ``warmup_from``."""

    song: int
    start: int
    stop: int
    warmup_from: int

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_from <= self.start < self.stop:
            raise ConfigError(
                f"chunk of song {self.song}: need 0 <= warmup_from ({self.warmup_from}) <= "
                f"start ({self.start}) < stop ({self.stop})"
            )

    @property
    def frames(self) -> int:
        """How many frames the chunk delivers."""
        return self.stop - self.start

    @property
    def warmup(self) -> int:
        """How many frames it renders and drops before ``start``."""
        return self.start - self.warmup_from


def warmup_frames(config: PipelineConfig, tolerance: float = SEAM_TOLERANCE) -> int | None:
    """Frames a chunk renders before its first so its seam cannot be seen; None: never split.

    See the module docstring for where each term comes from.
    """
    if not 0 < tolerance < 1:
        raise ConfigError(f"seam tolerance must be within (0, 1), got {tolerance}")
    stream = config.stream
    if stream.img2img_feedback:
        return None
    frames = 0
    blend = stream.temporal_blend_ratio if stream.enable_temporal_coherence else 0.0
    if blend >= 1.0:
        return None  # every frame keeps all of the one before: the start never fades
    if blend > 0.0:
        frames += math.ceil(math.log(tolerance) / math.log(blend))
    steps = config.inference.num_inference_steps
    if stream.use_stream_batch and steps > 1:
        frames += steps - 1
    if stream.enable_similarity_filter:
        frames += stream.similarity_max_skip + 1
    return frames


def piece_frames(config: PipelineConfig) -> int:
    """Frames a worker sends back at once: about a second of video, whole batches."""
    batch = config.inference.batch_size
    return max(1, math.ceil(config.audio.fps / batch)) * batch


def plan_chunks(
    song: int,
    num_frames: int,
    *,
    chunk_frames: int,
    warmup: int | None,
    align: int = 1,
    batch_size: int = 1,
) -> list[Chunk]:
    """Cut a song of ``num_frames`` frames into chunks of about ``chunk_frames``.

    Chunk edges fall on multiples of ``align`` (the piece size), warm-ups begin on multiples of
    ``batch_size`` (so batches group frames as in the unsplit render). ``warmup`` None, or a
    song shorter than one and a half chunks, gives one chunk: the whole song.
    """
    if num_frames < 1:
        raise ConfigError(f"song {song}: nothing to render ({num_frames} frames)")
    if chunk_frames < 1 or align < 1 or batch_size < 1:
        raise ConfigError(
            f"chunk_frames ({chunk_frames}), align ({align}) and batch_size ({batch_size}) "
            "must be at least 1"
        )
    length = math.ceil(chunk_frames / align) * align
    if warmup is None or num_frames <= _WHOLE_BELOW * length:
        return [Chunk(song, 0, num_frames, 0)]
    edges = list(range(0, num_frames, length))
    if num_frames - edges[-1] < length / 2:
        edges.pop()  # a short tail joins the chunk before it
    chunks = []
    for start, stop in itertools.pairwise([*edges, num_frames]):
        first = max(0, start - warmup)
        chunks.append(Chunk(song, start, stop, first - first % batch_size))
    return chunks


def pieces(chunk: Chunk, size: int) -> list[tuple[int, int]]:
    """The chunk's frames as ``(start, stop)`` runs that end on multiples of ``size``."""
    if size < 1:
        raise ConfigError(f"piece size must be at least 1, got {size}")
    edges = [chunk.start, *range((chunk.start // size + 1) * size, chunk.stop, size), chunk.stop]
    return list(itertools.pairwise(edges))
