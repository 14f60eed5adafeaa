"""Stream framing for OSC over TCP."""

from __future__ import annotations

import struct

import pytest

from bridge.osc.tcp import MAX_PACKET, split_prefixed, split_slip


def test_split_slip_keeps_the_unfinished_frame() -> None:
    frames, rest = split_slip(b"\xc0one\xc0\xc0two\xc0thr")
    assert (frames, rest) == ([b"one", b"two"], b"thr")


def test_split_prefixed_waits_for_whole_packets() -> None:
    stream = struct.pack(">I", 3) + b"abc" + struct.pack(">I", 5) + b"de"
    packets, rest = split_prefixed(stream)
    assert packets == [b"abc"]
    assert rest == struct.pack(">I", 5) + b"de"


def test_split_prefixed_refuses_huge_lengths() -> None:
    with pytest.raises(ValueError, match=f"packet of {MAX_PACKET + 1} bytes"):
        split_prefixed(struct.pack(">I", MAX_PACKET + 1))
