"""Cluster renders on a real local Ray cluster (2 CPUs, the tiny model at 64x64).

The cluster starts once for the module, inside a private network namespace where the only
interface is loopback (Ray's servers listen on every interface; see tests/netns.py); where
namespaces cannot be made (not root) it is addressed on 127.0.0.1 instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bridge.cluster.plan import warmup_frames
from bridge.cluster.pool import WorkerPool
from bridge.cluster.progress import ClusterProgress
from bridge.cluster.render import analyse_songs, render_to_files
from bridge.cluster.session import ray_session
from bridge.cluster.worker import PieceReport
from bridge.options import RenderOptions
from engine.audio.types import AudioFeatures
from engine.config import PipelineConfig
from engine.frame import Frame
from engine.render import Conductor
from tests.bridge.cluster.support import decoded_frames, local_cluster, write_song
from tests.bridge.outputs.patterns import psnr
from tests.engine.synthetic import make_features
from tests.netns import interfaces

ray = pytest.importorskip(
    "ray", reason="the cluster extra is not installed (pip install '.[cluster]')"
)

pytestmark = pytest.mark.slow

FPS = 8
SEAM_PSNR = 40.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ModuleType, bool]]:
    """A local Ray cluster with 2 CPUs (ray, whether it is in a private network namespace)."""
    with local_cluster(2) as (ray_module, isolated, _started):
        yield ray_module, isolated


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    cache = tmp_path_factory.mktemp("analysis")
    return PipelineConfig().with_overrides(
        {
            "diffusion.model": "tiny",
            "inference.width": 64,
            "inference.height": 64,
            "inference.batch_size": 2,
            "audio.fps": FPS,
            "audio.cache_dir": str(cache),
        }
    )


@pytest.fixture(scope="module")
def pools(
    cluster: tuple[ModuleType, bool], config: PipelineConfig
) -> Iterator[Callable[[], WorkerPool]]:
    """Two workers for the module; a pool a test killed a worker of is replaced (the cluster
    holds two CPU slots, so the dead worker's partner must go first)."""
    current: list[WorkerPool] = []

    def whole() -> WorkerPool:
        if current and len(current[0].workers) < 2:
            current.pop().close()
        if not current:
            current.append(WorkerPool(cluster[0], config))
        return current[0]

    yield whole
    for workers in current:
        workers.close()


@pytest.fixture
def pool(pools: Callable[[], WorkerPool]) -> WorkerPool:
    return pools()


class Collect:
    """A frame sink that keeps the frames (before any encoding)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.committed = False
        self.aborted = False

    def write(self, frames: Iterable[Frame]) -> None:
        self.frames.extend(frames)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True


class Seen(ClusterProgress):
    """The real bar, silent, remembering every piece a worker delivered."""

    def __init__(self, total: int, songs: int) -> None:
        super().__init__(total, songs, disable=True)
        self.reports: list[PieceReport] = []

    def piece(self, report: PieceReport) -> None:
        self.reports.append(report)
        super().piece(report)


def render(
    pool: WorkerPool, songs: list[AudioFeatures], **options: object
) -> tuple[list[Collect], Seen]:
    sinks = [Collect() for _ in songs]
    seen = Seen(sum(s.num_frames for s in songs), len(songs))
    pool.render(songs, sinks.__getitem__, progress=seen, **options)  # type: ignore[arg-type]
    return sinks, seen


@pytest.fixture(scope="module")
def reference(config: PipelineConfig) -> Conductor:
    """The single-process path's conductor: `hamba render` without --cluster renders every song
    with one such (bridge.offline.render_songs), from a clean state each."""
    return Conductor.from_config(config)


def single_process(conductor: Conductor, features: AudioFeatures) -> list[np.ndarray]:
    return [f.image for f in conductor.render_features(features)]


def test_the_cluster_is_reachable_on_loopback_only(cluster: tuple[ModuleType, bool]) -> None:
    ray_module, isolated = cluster
    nodes = [n for n in ray_module.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    if isolated:
        # every socket Ray opened lives in this namespace, whose only interface is loopback
        assert interfaces() == ["lo"]
        assert socket.gethostbyname("localhost") == "127.0.0.1"


def test_one_worker_per_cpu_slot_each_loading_the_model_once(pool: WorkerPool) -> None:
    assert sorted(pool.workers) == ["w0", "w1"]
    infos = list(pool.workers.values())
    assert len({info.pid for info in infos}) == 2  # two processes, each with its own model
    assert all(info.device == "cpu" and info.untrained for info in infos)
    assert all(info.load_seconds > 0 for info in infos)


def test_three_songs_render_the_frames_of_the_single_process_path(
    pool: WorkerPool, reference: Conductor
) -> None:
    songs = [make_features(n, seed=n) for n in (12, 20, 17)]
    pids_before = {info.pid for info in pool.workers.values()}
    sinks, seen = render(pool, songs)
    for features, sink in zip(songs, sinks, strict=True):
        assert sink.committed
        assert not sink.aborted
        assert [f.index for f in sink.frames] == list(range(features.num_frames))
        assert [f.time for f in sink.frames] == [i / features.fps for i in range(len(sink.frames))]
        for image, frame in zip(single_process(reference, features), sink.frames, strict=True):
            np.testing.assert_array_equal(image, frame.image)
    assert {r.worker for r in seen.reports} == {"w0", "w1"}  # the songs were spread
    assert seen.songs_done == 3
    assert seen.frames_done == sum(s.num_frames for s in songs)
    # the same actors served every song: models are loaded per worker, not per song
    assert {info.pid for info in pool.workers.values()} == pids_before


def test_a_long_song_in_chunks_matches_the_unsplit_render_at_every_seam(
    pool: WorkerPool, config: PipelineConfig, reference: Conductor
) -> None:
    rng = np.random.default_rng(5)
    # quiet music: energy near 0 blends frames the most, the hardest case for a seam
    song = make_features(96, energy=0.05 * rng.random(96), seed=5)
    sinks, seen = render(pool, [song], chunk_seconds=2.0)
    frames = [f.image for f in sinks[0].frames]
    assert len(frames) == 96
    assert sinks[0].committed
    whole = single_process(reference, song)
    seams = sorted({r.start for r in seen.reports} & set(range(16, 96, 16)))
    assert seams == [16, 32, 48, 64, 80]  # six chunks of 2 s at 8 fps
    assert {r.worker for r in seen.reports} == {"w0", "w1"}
    for i in range(16):
        np.testing.assert_array_equal(frames[i], whole[i])  # the first chunk has no seam
    worst = {seam: min(psnr(frames[i], whole[i]) for i in range(seam, seam + 16)) for seam in seams}
    assert min(worst.values()) >= SEAM_PSNR, worst
    # the warm-up frames were rendered and dropped: the first piece of each chunk did more work
    warm = warmup_frames(config)
    assert warm is not None
    assert warm > 0
    firsts = [r for r in seen.reports if r.start in seams]
    assert all(r.rendered >= r.stop - r.start + warm for r in firsts)

    # the chunks, not the workers, decide the frames: one worker gives the very same
    alone, alone_seen = render(pool, [song], chunk_seconds=2.0, workers=1)
    assert {r.worker for r in alone_seen.reports} == {"w0"}
    for a, b in zip(frames, [f.image for f in alone[0].frames], strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_a_warmup_the_seams_show(pool: WorkerPool, reference: Conductor) -> None:
    # the measurement above is not blind: the same split with no warm-up is far below 40 dB
    rng = np.random.default_rng(5)
    song = make_features(48, energy=0.05 * rng.random(48), seed=5)
    sinks, _ = render(pool, [song], chunk_seconds=2.0, warmup=0)
    whole = single_process(reference, song)
    worst = min(psnr(f.image, whole[f.index]) for f in sinks[0].frames[16:])
    assert worst < SEAM_PSNR


# mp4 files: the path `hamba render --cluster` takes


class FailAfter(ClusterProgress):
    """The real bar, which fails the render (as Ctrl-C would) after ``count`` pieces."""

    def __init__(self, count: int, total: int, songs: int) -> None:
        super().__init__(total, songs, disable=True)
        self.count = count

    def piece(self, report: PieceReport) -> None:
        super().piece(report)
        self.count -= 1
        if self.count == 0:
            raise KeyboardInterrupt


def test_an_interrupted_render_leaves_no_partial_file(
    pool: WorkerPool, config: PipelineConfig, tmp_path: Path
) -> None:
    files = [write_song(tmp_path, n, 3.0) for n in ("one", "two")]
    out = tmp_path / "renders"
    songs = analyse_songs(config, files, out)
    bar = FailAfter(4, sum(s.features.num_frames for s in songs), len(songs))
    with pytest.raises(KeyboardInterrupt):
        render_to_files(pool, config, songs, RenderOptions(chunk_seconds=2.0), bar)
    assert bar.frames_done > 0  # it had started writing
    assert not list(out.glob("*.partial.mp4"))
    by_target = {song.target: song.features.num_frames for song in songs}
    for path in out.glob("*"):  # a song that was finished before the interrupt is whole
        assert decoded_frames(path) == by_target[path]


def test_a_session_inside_a_connected_process_keeps_its_cluster(
    cluster: tuple[ModuleType, bool],
) -> None:
    with ray_session("ray://nowhere.invalid:10001") as connected:
        assert connected.is_initialized()
    assert ray.is_initialized()  # the caller's connection is not shut down


# last: it kills a worker of the module's pool (the next test would get a new pool)


class KillOnce(ClusterProgress):
    """The real bar, which kills worker ``victim`` right after its first piece of a chunk."""

    def __init__(self, pool: WorkerPool, victim: str, total: int, songs: int) -> None:
        super().__init__(total, songs, disable=True)
        self.pool, self.victim = pool, victim
        self.killed_at: PieceReport | None = None

    def piece(self, report: PieceReport) -> None:
        super().piece(report)
        if report.worker == self.victim and self.killed_at is None:
            self.killed_at = report
            ray.kill(self.pool.handle(self.victim))


def test_a_worker_killed_mid_chunk_still_finishes_every_song(
    pool: WorkerPool, config: PipelineConfig, tmp_path: Path
) -> None:
    files = [write_song(tmp_path, n, s) for n, s in (("a", 2.0), ("long", 6.0), ("c", 3.0))]
    out = tmp_path / "renders"
    songs = analyse_songs(config, files, out)
    # 3 s chunks: pieces of 1 s, so a worker killed after its first piece dies mid-chunk
    options = RenderOptions(chunk_seconds=3.0)
    total = sum(song.features.num_frames for song in songs)
    bar = KillOnce(pool, "w1", total, len(songs))
    written = render_to_files(pool, config, songs, options, bar)
    assert bar.killed_at is not None
    assert bar.lost == ["w1"]
    assert bar.retries >= 1
    assert list(pool.workers) == ["w0"]
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4", "long.mp4"]
    assert written == [out / "a.mp4", out / "long.mp4", out / "c.mp4"]
    for song in songs:
        assert decoded_frames(song.target) == song.features.num_frames
