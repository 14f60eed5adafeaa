"""Chunk planning: edges, warm-ups, pieces and the warm-up each stream setting needs."""

from __future__ import annotations

import itertools
import math

import pytest

from bridge.cluster.plan import (
    SEAM_TOLERANCE,
    Chunk,
    piece_frames,
    pieces,
    plan_chunks,
    warmup_frames,
)
from engine.config import PipelineConfig
from engine.errors import ConfigError


def test_a_short_song_stays_whole() -> None:
    assert plan_chunks(0, 100, chunk_frames=80, warmup=8) == [Chunk(0, 0, 100, 0)]
    # feedback (warmup None) never splits, however long the song
    assert plan_chunks(3, 10_000, chunk_frames=80, warmup=None) == [Chunk(3, 0, 10_000, 0)]


def test_chunks_cover_the_song_once_with_aligned_edges_and_warmups() -> None:
    chunks = plan_chunks(1, 1000, chunk_frames=100, warmup=13, align=24, batch_size=4)
    # 100 frames round up to whole pieces of 24: 120; the 40-frame tail joins the last chunk
    assert [c.start for c in chunks] == list(range(0, 960, 120))
    assert chunks[-1].frames == 160
    assert chunks[0].start == 0
    assert chunks[-1].stop == 1000
    for before, after in itertools.pairwise(chunks):
        assert before.stop == after.start
        assert after.start % 24 == 0
    for chunk in chunks[1:]:
        assert chunk.warmup_from % 4 == 0  # batches group frames as in the unsplit render
        assert 13 <= chunk.warmup < 13 + 4
    assert chunks[0].warmup == 0
    assert all(c.song == 1 for c in chunks)


def test_a_short_tail_joins_the_chunk_before() -> None:
    # 250 = 100 + 100 + 50: the tail is half a chunk, kept; 240 = 100 + 100 + 40: joined
    assert [c.frames for c in plan_chunks(0, 250, chunk_frames=100, warmup=4)] == [100, 100, 50]
    assert [c.frames for c in plan_chunks(0, 240, chunk_frames=100, warmup=4)] == [100, 140]


def test_the_plan_does_not_depend_on_anything_but_the_song_and_settings() -> None:
    first = plan_chunks(0, 5000, chunk_frames=240, warmup=8, align=24, batch_size=2)
    again = plan_chunks(0, 5000, chunk_frames=240, warmup=8, align=24, batch_size=2)
    assert first == again


def test_pieces_end_on_multiples_of_their_size() -> None:
    assert pieces(Chunk(0, 48, 96, 40), 16) == [(48, 64), (64, 80), (80, 96)]
    # a retry starting mid-chunk keeps the same piece edges
    assert pieces(Chunk(0, 64, 96, 40), 16) == [(64, 80), (80, 96)]
    assert pieces(Chunk(0, 0, 20, 0), 8) == [(0, 8), (8, 16), (16, 20)]
    assert pieces(Chunk(0, 5, 9, 0), 8) == [(5, 8), (8, 9)]


def test_piece_size_is_about_a_second_of_whole_batches() -> None:
    config = PipelineConfig().with_overrides({"audio.fps": 24, "inference.batch_size": 5})
    assert piece_frames(config) == 25
    assert piece_frames(PipelineConfig().with_overrides({"audio.fps": 30})) == 30


def test_a_bad_chunk_is_refused() -> None:
    with pytest.raises(ConfigError, match="warmup_from"):
        Chunk(0, 10, 10, 0)
    with pytest.raises(ConfigError, match="nothing to render"):
        plan_chunks(0, 0, chunk_frames=10, warmup=2)


def _config(**overrides: object) -> PipelineConfig:
    return PipelineConfig().with_overrides(overrides)


def test_warmup_follows_the_stream_settings() -> None:
    plain = _config(**{"stream.temporal_blend_ratio": 0.3})
    coherence = math.ceil(math.log(SEAM_TOLERANCE) / math.log(0.3))
    assert warmup_frames(plain) == coherence
    assert 0.3**coherence <= SEAM_TOLERANCE < 0.3 ** (coherence - 1)
    # a higher blend remembers longer
    high = warmup_frames(_config(**{"stream.temporal_blend_ratio": 0.9}))
    assert high is not None
    assert high > 4 * coherence
    # no coherence, one step, no filter: nothing to warm up
    assert warmup_frames(_config(**{"stream.enable_temporal_coherence": False})) == 0
    # the stream batch holds steps - 1 frames in flight
    four = _config(**{"stream.temporal_blend_ratio": 0.3, "inference.num_inference_steps": 4})
    assert warmup_frames(four) == coherence + 3
    # the similarity filter may hold a frame for similarity_max_skip frames
    skip = _config(
        **{
            "stream.temporal_blend_ratio": 0.3,
            "stream.enable_similarity_filter": True,
            "stream.similarity_max_skip": 6,
        }
    )
    assert warmup_frames(skip) == coherence + 7


def test_feedback_and_a_full_blend_are_never_split() -> None:
    assert warmup_frames(_config(**{"stream.img2img_feedback": True})) is None
    assert warmup_frames(_config(**{"stream.temporal_blend_ratio": 1.0})) is None
