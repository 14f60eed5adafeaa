"""Wire checks on datagrams python-osc parses leniently."""

from __future__ import annotations

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from bridge.osc.wire import type_tags, wire_problem


@pytest.mark.parametrize(
    "args", [[], [0.5], [1, "two", 3.0], [True, False, None], ["é", "abc", "abcd"]]
)
def test_complete_messages_pass(args: list[object]) -> None:
    message = build_msg("/hamba/x", args)
    assert wire_problem(message) is None


def test_type_tags() -> None:
    assert type_tags(build_msg("/a", [1, 2.0, "s", True]).dgram) == "ifsT"
    assert type_tags(b"/a\x00\x00") == ""


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_zero_padded_floats_are_caught(cut: int) -> None:
    dgram = build_msg("/hamba/x", [0.25, 0.5]).dgram[:-cut]
    message = OscMessage(dgram)  # python-osc accepts it, padding the floats with zeros
    problem = wire_problem(message)
    assert problem is not None
    assert problem.startswith("truncated")


def test_unsupported_tags_are_named() -> None:
    message = OscMessage(build_msg("/hamba/x", [b"\x01\x02", [1]]).dgram)
    assert wire_problem(message) == "unsupported type tag '[', ']', 'b'"
