"""Frames whose content can be checked after a trip through an output."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def smooth_frame(width: int, height: int, phase: int = 0) -> np.ndarray:
    """Slow waves and gradients (what lossy codecs keep well), shifted by ``phase``.

    PSNR comparisons after NDI or H.264 are meaningful on it.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = phase / 50.0
    frame = np.empty((height, width, 4), dtype=np.uint8)
    frame[..., 0] = 127.5 + 127 * np.sin(2 * np.pi * (x / width + shift))
    frame[..., 1] = y * 255 / max(height - 1, 1)
    frame[..., 2] = 127.5 + 127 * np.cos(2 * np.pi * (y / height + shift))
    frame[..., 3] = 255
    return frame


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """A deterministic, index-dependent frame for byte-exact comparisons."""
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


_STAMP = struct.Struct("<Iq")  # crc32 of everything after the stamp's crc field, frame index


def stamped_frame(index: int, body: np.ndarray) -> np.ndarray:
    """``body`` with its first 12 bytes replaced by (crc32 of the rest, index)."""
    frame = body.copy()
    flat = frame.reshape(-1)
    flat[4:12] = np.frombuffer(struct.pack("<q", index), dtype=np.uint8)
    crc = zlib.crc32(flat[4:].data)
    flat[:4] = np.frombuffer(struct.pack("<I", crc), dtype=np.uint8)
    return frame


def read_stamp(frame: np.ndarray) -> tuple[bool, int]:
    """(crc matches, embedded index) of a stamped frame: a torn frame fails the crc."""
    flat = np.ascontiguousarray(frame).reshape(-1)
    crc, index = _STAMP.unpack(flat[:12].tobytes())
    return zlib.crc32(flat[4:].data) == crc, index


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
