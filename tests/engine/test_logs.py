"""Log hygiene: rate limits on a clock the test moves by hand; library noise muted, nothing else."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.logs import (
    LogThrottle,
    MuteFilter,
    RateLimitFilter,
    add_filter_once,
    quiet_unused_image_processors,
)

REPO = Path(__file__).resolve().parents[2]


def test_burst_per_window_then_a_count_of_what_was_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("test.throttle"), burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        written = [throttle.warning("bad %d", i) for i in range(10)]
        now[0] += 1.0
        written.append(throttle.warning("bad %d", 10))
    assert written == [True] * 3 + [False] * 7 + [True]
    assert [r.getMessage() for r in caplog.records] == [
        "bad 0",
        "bad 1",
        "bad 2",
        "bad 10 (7 similar messages suppressed)",
    ]


def test_rate_limit_filter_lets_one_through_per_window_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    logger = logging.getLogger("test.logs.library")
    limit = RateLimitFilter(
        lambda r: r.getMessage().startswith("noisy"),
        interval=10.0,
        max_chars=12,
        clock=lambda: now[0],
    )
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.WARNING, logger="test.logs.library"):
            for i in range(5):
                logger.warning("noisy %d %s", i, "x" * 40)
            logger.warning("something else")
            now[0] += 10.0
            logger.warning("noisy again")
    finally:
        logger.removeFilter(limit)
    assert [r.getMessage() for r in caplog.records] == [
        "noisy 0 xxxx...",
        "something else",
        "noisy again (4 similar messages suppressed)",
    ]
    assert limit.matched == 6


def test_add_filter_once_does_not_stack() -> None:
    first = add_filter_once("test.logs.once", "k", lambda: MuteFilter(lambda r: True))
    second = add_filter_once("test.logs.once", "k", lambda: MuteFilter(lambda r: True))
    assert first is second
    assert logging.getLogger("test.logs.once").filters.count(first) == 1


def test_only_the_image_processor_fallback_is_muted(caplog: pytest.LogCaptureFixture) -> None:
    muted = quiet_unused_image_processors()
    logger = logging.getLogger("transformers.utils.import_utils")
    before = muted.muted
    with caplog.at_level(logging.WARNING, logger="transformers"):
        logger.warning(
            "`CLIPImageProcessor` requires torchvision (not installed); falling back to "
            "`CLIPImageProcessorPil` for backward compatibility."
        )
        logger.warning("some other transformers warning a user should see")
    assert [r.getMessage() for r in caplog.records] == [
        "some other transformers warning a user should see"
    ]
    assert muted.muted == before + 1


def test_loading_diffusers_through_the_engine_prints_no_torchvision_warning() -> None:
    # a fresh interpreter: transformers warns once per process, and only before the first import
    code = (
        "import engine.diffusion.base\n"
        "from diffusers import StableDiffusionPipeline\n"
        "print('imported')\n"
    )
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="warning", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    assert "torchvision" not in result.stderr, result.stderr


def test_a_hub_lookup_through_the_engine_prints_no_symlink_deprecation(tmp_path: Path) -> None:
    # a fresh interpreter with every warning shown: an uncached TAESD hub id, offline, is a
    # ModelError and nothing else on stderr
    code = (
        "import torch\n"
        "from engine.diffusion.loading import load_tiny_vae\n"
        "from engine.errors import ModelError\n"
        "try:\n"
        "    load_tiny_vae('madebyollin/taesdxl', dtype=torch.float32, local_files_only=True)\n"
        "except ModelError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "refused: " in result.stdout
    assert "madebyollin/taesdxl" in result.stdout
    assert "local_dir_use_symlinks" not in result.stderr, result.stderr
