"""A live daemon run on each model kind's tiny model publishes frames of the configured size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.daemon import Daemon
from bridge.options import RunOptions
from engine.config import PipelineConfig
from tests.engine.audio.signals import tones, write_audio


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("song") / "tone.wav"
    return write_audio(path, tones([330.0], 2.0, 22050), 22050)


@pytest.mark.parametrize("model", ["tiny-sd2", "tiny-sdxl"])
def test_the_daemon_runs_each_kind(model: str, song: Path, tmp_path: Path) -> None:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": model,
            "inference.width": 80,
            "inference.height": 64,
            "audio.fps": 8,
            "audio.cache_dir": str(tmp_path / "cache"),
        }
    )
    run = RunOptions.model_validate(
        {
            "audio": song,
            "outputs": [f"png:{tmp_path / 'frames'}"],
            "osc_host": "127.0.0.1",
            "osc_port": 0,
            "oscquery_port": None,
            "duration": 1.0,
        }
    )
    stats = Daemon(config, run).run()
    written = sorted((tmp_path / "frames").glob("*.png"))
    assert stats.frames >= 2
    assert len(written) == stats.frames
    image = np.asarray(Image.open(written[-1]))
    assert image.shape[:2] == (64, 80)
    assert image[..., :3].std() > 5
