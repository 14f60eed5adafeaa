"""OSCQuery over real HTTP: responses checked against the proposal's field names and types."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.feedback import FeedbackSender
from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from engine.errors import ControlError
from osc_schema.schema import SCHEMA
from tests.bridge.osc.helpers import barrier, http_get, music_state, wait_for

# the node fields the OSCQuery proposal defines (github.com/Vidvox/OSCQueryProposal)
NODE_FIELDS = {"FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "RANGE", "DESCRIPTION", "UNIT", "VALUE"}
HOST_INFO_FIELDS = {
    "NAME",
    "EXTENSIONS",
    "OSC_IP",
    "OSC_PORT",
    "OSC_TRANSPORT",
    "WS_IP",
    "WS_PORT",
}
VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "f": (float, int),
    "i": (int,),
    "s": (str,),
    "T": (bool,),
}


def check_node(node: dict[str, Any], path: str) -> int:
    """Assert one node (and its children) follows the proposal; the number of methods."""
    assert set(node) <= NODE_FIELDS, set(node) - NODE_FIELDS
    assert node["FULL_PATH"] == path
    assert isinstance(node["DESCRIPTION"], str)
    assert node["ACCESS"] in (0, 1, 2, 3)
    methods = 0
    if "TYPE" in node:
        methods = 1
        tags = node["TYPE"]
        assert isinstance(tags, str)
        assert tags
        assert set(tags) <= set(VALUE_TYPES)
        if "RANGE" in node:
            assert len(node["RANGE"]) == len(tags)
            for item in node["RANGE"]:
                assert item is None or (item and set(item) <= {"MIN", "MAX", "VALS"})
                if item and "VALS" in item:
                    assert isinstance(item["VALS"], list)
                for bound in ("MIN", "MAX"):
                    if item and bound in item:
                        assert isinstance(item[bound], (int, float))
        if "UNIT" in node:
            assert len(node["UNIT"]) == len(tags)
            assert all(isinstance(u, str) for u in node["UNIT"])
        if "VALUE" in node:
            assert node["ACCESS"] in (1, 3), "a value is only shown where it may be read"
            assert len(node["VALUE"]) == len(tags)
            for tag, value in zip(tags, node["VALUE"], strict=True):
                assert isinstance(value, VALUE_TYPES[tag]), (path, tag, value)
                assert tag == "T" or not isinstance(value, bool)
    else:
        assert node["ACCESS"] == 0
        assert "CONTENTS" in node
    for name, child in node.get("CONTENTS", {}).items():
        assert "/" not in name
        methods += check_node(child, f"{path.rstrip('/')}/{name}")
    return methods


@pytest.fixture
def oscquery(store: ControlStore) -> Iterator[OscQueryServer]:
    with OscQueryServer(store, osc_port=9000, advertise=False) as running:
        yield running


def url(server: OscQueryServer, target: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{target}"


def test_namespace_follows_the_proposal_and_holds_every_address(
    oscquery: OscQueryServer,
) -> None:
    status, root = http_get(url(oscquery, "/"))
    assert status == 200
    assert check_node(root, "/") == len(SCHEMA)


def test_node_and_attribute_queries(oscquery: OscQueryServer) -> None:
    status, node = http_get(url(oscquery, "/hamba/blend"))
    assert status == 200
    assert node["TYPE"] == "f"
    assert node["ACCESS"] == 3
    assert node["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}]
    assert http_get(url(oscquery, "/hamba/blend?VALUE")) == (200, {"VALUE": [0.3]})
    assert http_get(url(oscquery, "/hamba/preset?RANGE")) == (
        200,
        {"RANGE": [{"VALS": ["fast", "balanced", "quality"]}]},
    )
    assert http_get(url(oscquery, "/hamba/pause?TYPE")) == (200, {"TYPE": "T"})
    assert http_get(url(oscquery, "/hamba/audio/?ACCESS")) == (200, {"ACCESS": 0})


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/hamba/nothing", 404),
        ("/hamba/blend/deeper", 404),
        ("/hamba/blend?FLAVOUR", 400),
        ("/hamba/prompt/chroma?VALUE", 204),  # write-only: no value to give
        ("/hamba/audio?TYPE", 204),  # a container has no type
    ],
)
def test_errors_follow_http_semantics(oscquery: OscQueryServer, target: str, status: int) -> None:
    assert http_get(url(oscquery, target)) == (status, None)


def test_host_info(oscquery: OscQueryServer) -> None:
    status, info = http_get(url(oscquery, "/?HOST_INFO"))
    assert status == 200
    assert set(info) == HOST_INFO_FIELDS
    assert info["NAME"] == "hambaMetal"
    assert info["OSC_IP"] == "127.0.0.1"
    assert info["OSC_PORT"] == 9000
    assert info["OSC_TRANSPORT"] == "UDP"
    assert isinstance(info["EXTENSIONS"], dict)
    assert all(isinstance(k, str) and isinstance(v, bool) for k, v in info["EXTENSIONS"].items())
    assert info["EXTENSIONS"]["VALUE"] is True
    assert info["EXTENSIONS"]["LISTEN"] is True
    assert info["EXTENSIONS"]["PATH_CHANGED"] is True
    assert (info["WS_IP"], info["WS_PORT"]) == ("127.0.0.1", oscquery.http_port)


def test_wildcard_host_reports_the_address_the_client_reached(store: ControlStore) -> None:
    with OscQueryServer(store, host="0.0.0.0", osc_port=9000, advertise=False) as server:
        _, info = http_get(url(server, "/?HOST_INFO"))
    assert info["OSC_IP"] == "127.0.0.1"


def test_value_follows_osc_messages(
    store: ControlStore, server: OscServer, client: SimpleUDPClient, oscquery: OscQueryServer
) -> None:
    client.send_message("/hamba/prompt/chroma", [7, "a storm of violins"])
    client.send_message("/hamba/coherence", False)
    barrier(client)
    assert http_get(url(oscquery, "/hamba/prompt/chroma/7?VALUE")) == (
        200,
        {"VALUE": ["a storm of violins"]},
    )
    assert http_get(url(oscquery, "/hamba/coherence?VALUE")) == (200, {"VALUE": [False]})


def test_outgoing_values_come_from_the_feedback(store: ControlStore) -> None:
    feedback = FeedbackSender()
    state = music_state(9, beat=True, beat_count=4, energy=0.5, tempo=128.0, chroma=0.0)
    with OscQueryServer(store, osc_port=9000, advertise=False, feedback=feedback) as server:
        before = http_get(url(server, "/hamba/audio/tempo?VALUE"))
        feedback.send_frame(state, fps=30.0, frame=9)
        status, root = http_get(url(server, "/"))
        assert status == 200
        assert http_get(url(server, "/hamba/audio/tempo?VALUE")) == (200, {"VALUE": [128.0]})
    assert before == (204, None)
    check_node(root, "/")
    assert root["CONTENTS"]["hamba"]["CONTENTS"]["audio"]["CONTENTS"]["beat"]["VALUE"] == [4]
    feedback.close()


def test_http_port_in_use_is_a_control_error(store: ControlStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ControlError, match=f"OSCQuery HTTP port {port}"):
            OscQueryServer(store, http_port=port, osc_port=9000, advertise=False).start()


def test_advertises_over_mdns_where_it_works(store: ControlStore) -> None:
    """Either the services are found by a second zeroconf instance, or mDNS was unavailable.

    Both outcomes are legitimate (a container may lack multicast); what must hold in both is
    that the HTTP server works meanwhile and that stop() returns.
    """
    from zeroconf import Zeroconf

    name = f"hamba-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    server = OscQueryServer(store, osc_port=9123, name=name)
    server.start()
    try:
        assert http_get(url(server, "/hamba/seed?VALUE")) == (200, {"VALUE": [42]})
        outcome = wait_for(lambda: server.advertisement != "pending" and server.advertisement)
        if outcome == "advertised":
            browser = Zeroconf()
            try:
                http = browser.get_service_info(
                    "_oscjson._tcp.local.", f"{name}._oscjson._tcp.local.", 3000
                )
                osc = browser.get_service_info("_osc._udp.local.", f"{name}._osc._udp.local.", 3000)
            finally:
                browser.close()
            assert http is not None
            assert http.port == server.http_port
            assert osc is not None
            assert osc.port == 9123
        else:
            assert outcome == "unavailable"
    finally:
        server.stop()
    with pytest.raises(OSError, match="Connection refused"):  # stopped: nothing listens any more
        http_get(url(server, "/"))
