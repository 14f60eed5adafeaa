"""The bundled demo song is what its script writes, small, and of the promised shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[3]


def test_script_rebuilds_the_bundled_file_byte_for_byte(tmp_path: Path, demo_wav: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_demo_audio", ROOT / "scripts" / "make_demo_audio.py"
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    rebuilt = tmp_path / "demo.wav"
    assert script.main([str(rebuilt)]) == 0

    assert rebuilt.read_bytes() == demo_wav.read_bytes()


def test_demo_is_8_s_of_22050_hz_mono_16_bit(demo_wav: Path) -> None:
    info = sf.info(str(demo_wav))

    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    assert info.duration == 8.0
    assert demo_wav.stat().st_size < 400_000
