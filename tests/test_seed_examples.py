"""The seed's two documented examples, written as its users write them (issue 11, item 8).

The original project documented an offline video generation and a real-time loop built from
package-level names (``from engine.audio import AudioAnalyzer`` ...) and passed one prompt's
embeddings as ``base_embeds[0]``, a ``(seq, hidden)`` tensor. Both examples run here as written,
with only the model (the untrained tiny one), the frame size (64x64) and the song (one second
made in the test) chosen so that they run in a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from engine.config import PipelineConfig
from tests.engine.audio.signals import click_track, piano_chord, triad_with_bass, write_audio

SR = 22050


def offline_video(
    song: Path, profile_path: Path, config: PipelineConfig
) -> list[npt.NDArray[np.uint8]]:
    """The seed's offline video generation: every frame of a song, batch by batch."""
    from engine.audio import AudioAnalyzer
    from engine.diffusion import SD15Pipeline, StreamDiffusionPipeline
    from engine.latent import LatentGenerator
    from engine.profiling import get_profiler
    from engine.prompt import PromptInterpolator

    profiler = get_profiler()
    profiler.enable()

    with profiler.profile("audio_analysis"):
        features = AudioAnalyzer(config.audio).analyze(song)

    base = SD15Pipeline(config.diffusion, config.inference)
    stream = StreamDiffusionPipeline(base, config.stream)

    base_embeds = stream.encode_prompt(config.prompt.base_prompt)
    chroma_embeds = torch.cat([stream.encode_prompt(p) for p in config.prompt.chroma_prompts])

    latent_gen = LatentGenerator(config.latent, base.device, base.dtype)
    with profiler.profile("latent_walk"):
        latents = latent_gen.generate_latent_walk(
            features, stream.get_latent_shape(), precompute=True
        )

    prompt_interp = PromptInterpolator(config.prompt, base.device, base.dtype)
    with profiler.profile("prompt_interpolation"):
        prompt_embeds = prompt_interp.interpolate_prompts(features, base_embeds[0], chroma_embeds)

    frames: list[npt.NDArray[np.uint8]] = []
    batch = config.inference.batch_size
    for start in range(0, features.num_frames, batch):
        with profiler.profile("generate_batch"):
            images = base.generate_batch(
                latents[start : start + batch], prompt_embeds[start : start + batch]
            )
        frames.extend(images)

    profiler.print_summary()
    profiler.export_json(profile_path)
    return frames


def realtime_loop(song: Path, config: PipelineConfig) -> tuple[list[npt.NDArray[np.uint8]], float]:
    """The seed's real-time loop: one frame per video frame, paced to the frame rate."""
    from engine.audio import AudioAnalyzer
    from engine.diffusion import SD15Pipeline, StreamDiffusionPipeline
    from engine.latent import LatentGenerator
    from engine.profiling import get_profiler
    from engine.prompt import PromptInterpolator

    profiler = get_profiler()
    profiler.enable()

    features = AudioAnalyzer(config.audio).analyze(song)
    base = SD15Pipeline(config.diffusion, config.inference)
    stream = StreamDiffusionPipeline(base, config.stream)
    latent_shape = stream.get_latent_shape()

    base_embeds = stream.encode_prompt(config.prompt.base_prompt)
    chroma_embeds = torch.cat([stream.encode_prompt(p) for p in config.prompt.chroma_prompts])
    prompt_interp = PromptInterpolator(config.prompt, base.device, base.dtype)
    all_prompt_embeds = prompt_interp.interpolate_prompts(features, base_embeds[0], chroma_embeds)

    latent_gen = LatentGenerator(config.latent, base.device, base.dtype)
    latent_gen.generate_latent_walk(features, latent_shape, precompute=False)

    frames: list[npt.NDArray[np.uint8]] = []
    frame_time = 1.0 / config.audio.fps
    start = time.perf_counter()
    for frame_idx in range(features.num_frames):
        with profiler.profile("frame"):
            latent = latent_gen.get_latent_at_frame(frame_idx, features)
            prompt_embeds = all_prompt_embeds[frame_idx : frame_idx + 1]
            energy = features.get_energy_at_frame(frame_idx)
            frame = stream.generate_frame_with_coherence(latent, prompt_embeds, energy)
        frames.append(frame)
        # wait for the frame's slot on the music clock
        delay = start + (frame_idx + 1) * frame_time - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    profiler.print_summary()
    return frames, profiler.get_avg_time("frame")


@pytest.fixture
def song(tmp_path: Path) -> Path:
    """One second at 22.05 kHz: an E minor chord then a C major one over a click track."""
    clicks, _ = click_track(120, 1.0, SR, offset=0.0)
    chords = np.concatenate(
        [
            piano_chord(triad_with_bass(52, minor=True), 0.5, SR),
            piano_chord(triad_with_bass(48), 0.5, SR),
        ]
    )
    return write_audio(tmp_path / "song.wav", 0.5 * clicks + chords, SR)


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    """The seed's fast preset with the tiny model at 64x64 (and the analysis cache in tmp)."""
    config = PipelineConfig.fast_preset()
    config.diffusion.model = "tiny"
    config.diffusion.device = "cpu"
    config.inference.width = 64
    config.inference.height = 64
    config.audio.cache_dir = tmp_path / "cache"
    return config


@pytest.fixture(autouse=True)
def quiet_profiler() -> Iterator[None]:
    """The examples switch the process-wide profiler on: put it back off and empty after."""
    yield
    from engine.profiling.profiler import get_profiler

    get_profiler().disable()
    get_profiler().reset()


def _check_frames(frames: list[npt.NDArray[np.uint8]], count: int) -> None:
    assert len(frames) == count
    for frame in frames:
        assert frame.shape == (64, 64, 4)
        assert frame.dtype == np.uint8
    # the music moves the picture: not every frame is the first one
    assert any(not np.array_equal(frame, frames[0]) for frame in frames[1:])


def test_the_seeds_offline_video_example_runs_as_written(
    song: Path, config: PipelineConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = offline_video(song, tmp_path / "profile.json", config)

    _check_frames(frames, count=round(config.audio.fps))
    summary = capsys.readouterr().out
    assert "generate_batch" in summary
    assert "prompt_interpolation" in summary
    exported = json.loads((tmp_path / "profile.json").read_text())
    assert "generate_batch" in json.dumps(exported["stages"])


def test_the_seeds_realtime_loop_runs_as_written(
    song: Path, config: PipelineConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, average = realtime_loop(song, config)

    _check_frames(frames, count=round(config.audio.fps))
    assert average > 0.0  # the profiler timed the frames (how fast is the benchmarks' business)
    assert "frame" in capsys.readouterr().out


def test_the_package_names_load_torch_only_when_used() -> None:
    # a fresh interpreter: this one has torch loaded already
    code = (
        "import sys\n"
        "import engine.audio, engine.diffusion, engine.latent, engine.prompt, engine.profiling\n"
        "from engine.audio import AudioAnalyzer, AudioFeatures\n"
        "from engine.profiling import get_profiler\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'loaded early'\n"
        "from engine.diffusion import SD15Pipeline\n"
        "assert 'torch' in sys.modules\n"
        "import engine.diffusion.sd15 as sd15\n"
        "assert SD15Pipeline is sd15.SD15Pipeline\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
