"""Shared fixtures."""

from tests.pulse import pulse_sink

__all__ = ["pulse_sink"]
