"""The project's one family of typed errors.

Every error names its culprit (a file, a field, a device, an OSC address) so that the CLI can
print a single clear line and a running daemon can report it and carry on.
"""

from __future__ import annotations


class HambaError(Exception):
    """Root of every error hambaMetal raises on purpose."""


class ConfigError(HambaError, ValueError):
    """A configuration value or file is invalid (names the field or the file)."""


class AudioError(HambaError):
    """An audio file or device cannot be read (names the file or the device)."""


class ModelError(HambaError):
    """A model cannot be found, loaded or run (names the model)."""


class OutputError(HambaError):
    """A frame output cannot be opened or fed (names the output)."""


class ControlError(HambaError, ValueError):
    """A live control change is invalid (names the control or OSC address)."""


class RenderError(HambaError):
    """The render loop cannot produce a frame (names the stage)."""
