"""Render the demo song with the built-in model and tile a few frames into docs/render-frames.png.

The built-in `tiny` model is untrained: the picture shows the engine's motion and colour
response to the music, not what a real Stable Diffusion model draws.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from bridge.cli import main as hamba

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = ROOT / "docs" / "render-frames.png"
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "demo.mp4"
        code = hamba(
            [
                "render",
                str(ROOT / "assets" / "demo.wav"),
                "-o",
                str(video),
                "--model",
                "tiny",
                "--width",
                "256",
                "--height",
                "256",
                "--fps",
                "12",
                "--no-progress",
            ]
        )
        if code:
            return code
        with av.open(str(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, 8).astype(int)
    rows = [np.concatenate([frames[i] for i in picks[r * 4 : r * 4 + 4]], axis=1) for r in range(2)]
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    sheet.resize((sheet.width // 2, sheet.height // 2), Image.Resampling.LANCZOS).save(
        out, optimize=True
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
