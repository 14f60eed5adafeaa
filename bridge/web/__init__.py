"""The control room: a browser page made from the schema, with meters and a live preview.

Served on the OSCQuery port under ``/ui/`` (see :class:`~bridge.web.room.ControlRoom`); the page
is an OSCQuery client of the daemon (LISTEN and OSC over the WebSocket).
"""

from bridge.web.room import ControlRoom

__all__ = ["ControlRoom"]
