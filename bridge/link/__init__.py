"""Ableton Link: follow a session's beat, lead it with the beat hambaMetal hears, or both.

See :mod:`bridge.link.session`.
"""
