"""`hamba render --cluster` as a user runs it: flags, the [render] table, the optional extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge.cli_process import REPO, TINY_64, cli_env, run_hamba
from tests.bridge.cluster.support import decoded_frames, write_song

# the subprocess reports which of these it imported
_REPORT_IMPORTS = (
    "import sys; from bridge.cli import main; rc = main(sys.argv[1:]); "
    "print('imported:', sorted({m.split('.')[0] for m in sys.modules if m == 'ray' "
    "or m.startswith('ray.')} | {m for m in sys.modules if m.startswith('bridge.cluster')})); "
    "sys.exit(rc)"
)
_WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from bridge.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("songs")
    return [write_song(folder, name, seconds) for name, seconds in (("one", 2.0), ("two", 5.0))]


def python(code: str, args: list[str], timeout: float = 300) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_without_cluster_ray_is_never_imported(songs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "one.mp4"
    args = ["render", str(songs[0]), "-o", str(out), *TINY_64, "--fps", "4", "--no-progress"]
    rc, stdout, stderr = python(_REPORT_IMPORTS, args)
    assert rc == 0, stderr
    assert "imported: []" in stdout  # neither ray nor the cluster package
    assert decoded_frames(out) == 8


def test_cluster_without_ray_names_the_extra(songs: list[Path], tmp_path: Path) -> None:
    args = ["render", str(songs[0]), "-o", str(tmp_path / "x.mp4"), "--cluster", "local"]
    rc, _, stderr = python(_WITHOUT_RAY, [*args, *TINY_64])
    assert rc == 2
    assert "hamba: error:" in stderr
    assert "pip install 'hambametal[cluster]'" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_bad_cluster_spec_or_render_option_is_refused(songs: list[Path], tmp_path: Path) -> None:
    result = run_hamba(["render", str(songs[0]), "-o", str(tmp_path / "x.mp4"), "--cluster", "lan"])
    assert result.returncode == 2
    assert "render options: cluster: 'lan' is none of local, auto, ray://HOST:PORT" in result.stderr
    config = tmp_path / "show.toml"
    config.write_text('[render]\ncluster = "local"\nchunk_second = 2\n')
    result = run_hamba(
        ["render", str(songs[0]), "-o", str(tmp_path / "x.mp4"), "--config", str(config)]
    )
    assert result.returncode == 2
    assert "render options: chunk_second:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_render_on_a_local_cluster_from_the_config_file(songs: list[Path], tmp_path: Path) -> None:
    # the [render] table turns the cluster on; a [run] table beside it is the daemon's business
    config = tmp_path / "show.toml"
    config.write_text(
        '[render]\ncluster = "local"\nchunk_seconds = 2.0\n\n[run]\noutputs = ["shm"]\n'
    )
    out = tmp_path / "renders"
    args = [
        "render",
        *map(str, songs),
        "-o",
        str(out),
        "--config",
        str(config),
        "--workers",
        "2",
        *TINY_64,
        "--fps",
        "4",
        "--set",
        f'audio.cache_dir="{tmp_path / "cache"}"',
    ]
    # the local cluster lives in a network namespace of its own when this may make one
    wrapper = ["-m", "tests.netns", sys.executable, "-m", "bridge.cli"] if os.geteuid() == 0 else []
    command = [*wrapper, *args] if wrapper else ["-m", "bridge.cli", *args]
    result = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "untrained" in result.stderr
    assert "2 workers ready" in result.stderr
    assert "songs 2/2" in result.stderr  # the one bar across the cluster
    assert result.stdout.split() == [str(out / "one.mp4"), str(out / "two.mp4")]
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4", "two.mp4"]
    assert decoded_frames(out / "one.mp4") == 8
    assert decoded_frames(out / "two.mp4") == 20
