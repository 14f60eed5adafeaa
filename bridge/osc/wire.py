"""Wire-level checks python-osc leaves to us, before a message reaches the schema.

python-osc skips type tags it does not know (the message then looks short of arguments) and
zero-pads a float cut short at the end of a datagram (a courtesy to Reaktor), which would turn a
truncated ``/hamba/blend 0.3`` into 0.0 or 0.2999992. We accept only the tags a control can use
and only messages whose bytes hold every argument their tags announce.
"""

from __future__ import annotations

from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

Reply = tuple[str, tuple[Any, ...]]
"""An outgoing message: address and arguments."""
Sender = tuple[str, int]
"""Where a packet came from: host and port."""

# i int32, h int64, f float32, d float64, s string, T true, F false, N nil
ACCEPTED_TAGS = frozenset("ihfdsTFN")
_FIXED_SIZES = {"i": 4, "f": 4, "h": 8, "d": 8, "T": 0, "F": 0, "N": 0}


def _padded(length: int) -> int:
    return (length + 3) & ~3


def _header(dgram: bytes) -> tuple[str, int]:
    """A message's type tags (without the comma) and the length of its address and tag strings."""
    address_end = dgram.find(b"\x00")
    if address_end < 0:
        raise ValueError("no address terminator")
    start = _padded(address_end + 1)
    if start >= len(dgram):
        return "", start
    end = dgram.find(b"\x00", start)
    if end < 0 or dgram[start : start + 1] != b",":
        raise ValueError("no type tag string")
    return dgram[start + 1 : end].decode("ascii", "replace"), _padded(end + 1)


def type_tags(dgram: bytes) -> str:
    """The type tags of an OSC message datagram, without the comma ("" when it has none)."""
    return _header(dgram)[0]


def wire_problem(message: OscMessage) -> str | None:
    """Why a parsed message cannot be trusted (unsupported tag, truncated), or None."""
    dgram = message.dgram
    try:
        tags, expected = _header(dgram)
    except ValueError:
        return "unreadable type tags"
    unsupported = sorted(set(tags) - ACCEPTED_TAGS)
    if unsupported:
        return f"unsupported type tag {', '.join(repr(t) for t in unsupported)}"
    for tag, value in zip((t for t in tags if t not in "TFN"), _scalars(message), strict=False):
        if tag == "s":
            expected += _padded(len(str(value).encode("utf-8")) + 1)
        else:
            expected += _FIXED_SIZES[tag]
    if len(dgram) < expected:
        return f"truncated: {len(dgram)} bytes, its arguments need {expected}"
    return None


def _scalars(message: OscMessage) -> list[object]:
    # the values that occupy bytes, in order (T, F and N carry none)
    return [p for p in message.params if not isinstance(p, bool) and p is not None]


def encode_reply(reply: Reply) -> bytes:
    """One outgoing message as an OSC datagram."""
    address, args = reply
    return build_msg(address, list(args)).dgram
