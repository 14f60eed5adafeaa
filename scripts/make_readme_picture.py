"""The README picture: frames of the demo song above the music that drove them, on one time axis.

Renders ``assets/demo.wav`` (8 s, 120 BPM, a chord change every two seconds) with the built-in
**untrained** ``tiny`` model at 64x64 (an 8x8 latent, shown enlarged), 12 fps, through the same
conductor the live daemon and ``hamba render`` use, twice: with the ``beat_slerp`` latent walk
(the default: a new keyframe noise on every beat) and with the ``circular`` walk (the latent turns
with the chroma's angle on the circle of fifths, so it changes with the chords). The tiny model
decodes with the fixed linear latent-to-RGB preview (``engine/diffusion/preview.py``), so what
shows is the latent walk itself as colour fields; its untrained weights barely listen to the
prompt, so the chroma-weighted prompt blend moves the colours only slightly. Below the strips:
the song's energy, its beats and its dominant pitch class per frame, the picked frames marked
on the same axis.

Needs matplotlib (a dev dependency: ``pip install -e .[dev]``). Run from the repository root:
``python scripts/make_readme_picture.py`` (writes ``docs/render-frames.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "render-frames.png"
PITCHES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FPS = 12
SIZE = 64
PICKS = 8
WALKS = ("beat_slerp", "circular")


def render(walk: str) -> tuple[object, list[np.ndarray]]:
    from engine.audio.analyzer import AudioAnalyzer
    from engine.config import PipelineConfig
    from engine.render import Conductor

    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": "tiny",
            "diffusion.device": "cpu",
            "inference.width": SIZE,
            "inference.height": SIZE,
            "audio.fps": FPS,
            "audio.cache": False,
            "latent.walk": walk,
        }
    )
    features = AudioAnalyzer(config.audio).analyze(ROOT / "assets" / "demo.wav")
    conductor = Conductor.from_config(config)
    frames = [frame.image[..., :3] for frame in conductor.render_features(features)]
    return features, frames


def draw(features: object, strips: dict[str, list[np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = float(features.fps)  # type: ignore[attr-defined]
    energy = np.asarray(features.energy)  # type: ignore[attr-defined]
    chroma = np.asarray(features.chroma_cq)  # type: ignore[attr-defined]
    beats = np.asarray(features.beat_frames)  # type: ignore[attr-defined]
    count = min(len(frames) for frames in strips.values())
    times = np.arange(count) / fps
    picks = np.linspace(4, count - 5, PICKS).round().astype(int)

    figure = plt.figure(figsize=(12, 6.4), dpi=100)
    grid = figure.add_gridspec(
        len(strips) + 1, PICKS, height_ratios=(1.0,) * len(strips) + (1.2,), hspace=0.3, wspace=0.04
    )
    for row, (walk, frames) in enumerate(strips.items()):
        for column, index in enumerate(picks):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(frames[index], interpolation="bicubic")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"{times[index]:.2f} s", fontsize=9)
            if column == 0:
                axis.set_ylabel(walk, fontsize=9)
    plot = figure.add_subplot(grid[len(strips), :])
    plot.plot(times, energy[:count], color="#d0542c", linewidth=1.6, label="energy")
    for beat in beats:
        plot.axvline(beat / fps, color="#999999", linewidth=0.8, linestyle=":")
    plot.plot([], [], color="#999999", linewidth=0.8, linestyle=":", label="beats")
    for index in picks:
        plot.axvline(times[index], color="#2c6fd0", linewidth=1.2, alpha=0.5)
    plot.set_xlim(0, times[-1])
    plot.set_ylim(0, 1.05)
    plot.set_xlabel("time (s)")
    plot.set_ylabel("energy")
    pitch = plot.twinx()
    dominant = chroma.argmax(axis=0)[:count]
    sounding = chroma.max(axis=0)[:count] > 0
    pitch.scatter(times[sounding], dominant[sounding], s=9, color="#3a9a5b", label="dominant pitch")
    pitch.set_yticks(range(12), PITCHES, fontsize=7)
    pitch.set_ylim(-0.5, 11.5)
    pitch.set_ylabel("dominant pitch class")
    lines = plot.get_legend_handles_labels()
    points = pitch.get_legend_handles_labels()
    plot.legend(lines[0] + points[0], lines[1] + points[1], loc="upper right", fontsize=8, ncol=3)
    figure.suptitle(
        "assets/demo.wav through the built-in untrained tiny model (linear latent preview), "
        "latent walks beat_slerp and circular; blue lines: the frames above",
        fontsize=9,
    )
    figure.savefig(OUT, bbox_inches="tight")


def main() -> int:
    strips = {}
    features: object = None
    for walk in WALKS:
        features, strips[walk] = render(walk)
    draw(features, strips)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
