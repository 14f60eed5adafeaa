"""Music analysis: offline (whole songs), streaming (live blocks) and the audio sources."""

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.types import AudioFeatures

__all__ = ["AudioAnalyzer", "AudioFeatures"]
