"""Fuzzing the UDP server: garbage, truncated packets, bundles, wrong type tags.

Every example goes over real UDP to one running server; after each, a probe proves the server
still answers (and has handled the example, datagrams being handled in order), and the controls
must be exactly as before. The generated messages are invalid by construction: their tags are
checked against the coercions the schema documents (an independent table here), so a state
change can only mean the server let a bad message through.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import closing

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import build_msg
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.server import OscServer
from engine.controls import ControlStore
from osc_schema.schema import incoming, values_of
from tests.bridge.osc.helpers import RawPacket, barrier, example_args, same_state

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INCOMING = incoming()
ADDRESSES = [e.address for e in INCOMING]
# what each schema tag accepts on the wire, as documented in osc_schema.schema
ACCEPTS = {"f": set("fdih"), "i": set("ihfd"), "T": set("TFihfd"), "s": {"s"}}
WIRE_TAGS = "ifdhsbTFNItmrc[]x"


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[tuple[ControlStore, OscServer, SimpleUDPClient]]:
    store = ControlStore()
    with (
        OscServer(store, port=0) as server,
        closing(SimpleUDPClient("127.0.0.1", server.port)) as client,
    ):
        yield store, server, client


def _osc_string(text: str) -> bytes:
    data = text.encode() + b"\x00"
    return data + b"\x00" * (-len(data) % 4)


def _bundle(elements: list[bytes]) -> bytes:
    body = b"".join(struct.pack(">i", len(e)) + e for e in elements)
    return b"#bundle\x00" + struct.pack(">Q", 1) + body


def _could_be_valid(address: str, tags: str) -> bool:
    entry = next(e for e in INCOMING if e.address == address)
    if len(tags) != len(entry.arguments):
        return False
    return all(t in ACCEPTS[a.tag] for t, a in zip(tags, entry.arguments, strict=True))


@st.composite
def wrong_tag_messages(draw: st.DrawFn) -> bytes:
    address = draw(st.sampled_from(ADDRESSES))
    tags = draw(st.text(alphabet=WIRE_TAGS, max_size=6))
    assume(not _could_be_valid(address, tags))
    payload = draw(st.binary(max_size=48))
    return _osc_string(address) + _osc_string("," + tags) + payload


@st.composite
def truncated_messages(draw: st.DrawFn) -> bytes:
    entry = draw(st.sampled_from(INCOMING))
    whole = build_msg(entry.address, example_args(entry, None)).dgram
    return whole[: draw(st.integers(min_value=0, max_value=len(whole) - 1))]


elements = st.one_of(wrong_tag_messages(), truncated_messages(), st.binary(max_size=64))
bundles = st.recursive(
    st.lists(elements, min_size=1, max_size=5).map(_bundle),
    lambda inner: st.lists(st.one_of(inner, elements), min_size=1, max_size=4).map(_bundle),
    max_leaves=12,
)
KINDS = {
    "random bytes": st.binary(max_size=512),
    "truncated packets": truncated_messages(),
    "wrong type tags": wrong_tag_messages(),
    "bundles": bundles,
}


@pytest.mark.parametrize("kind", list(KINDS))
@FUZZ
@given(data=st.data())
def test_server_survives_and_state_is_unchanged(
    fuzz_target: tuple[ControlStore, OscServer, SimpleUDPClient], kind: str, data: st.DataObject
) -> None:
    store, server, client = fuzz_target
    datagram = data.draw(KINDS[kind], label=kind)
    before = store.snapshot()
    targets = server.feedback.targets
    client.send(RawPacket(datagram))
    barrier(client)  # answered: the server is alive and has handled the datagram
    assert same_state(before, store), values_of(store.values)
    assert server.feedback.targets == targets


def test_still_applies_valid_messages_after_fuzzing(
    fuzz_target: tuple[ControlStore, OscServer, SimpleUDPClient],
) -> None:
    store, server, client = fuzz_target
    client.send_message("/hamba/seed", 31337)
    assert barrier(client) == []
    assert store.values.seed == 31337
    assert server.stats.malformed > 0
    assert server.stats.rejected > 0
