"""The feedback stream over real UDP: what arrives at a listener, subscriptions, send failures."""

from __future__ import annotations

import socket
from contextlib import closing

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.feedback import MAX_TARGETS, FeedbackSender, resolve_target
from bridge.osc.server import OscServer
from engine.audio.types import MusicState
from engine.controls import ControlStore
from engine.errors import ControlError
from osc_schema.schema import BEAT, CHROMA, DROPS, ENERGY, FPS, FRAME, TEMPO
from tests.bridge.osc.helpers import barrier, music_state, port_of

CHROMA_VALUES = np.linspace(0.0, 1.0, 12, dtype=np.float32)
PER_FRAME = [ENERGY, TEMPO, CHROMA, FPS, FRAME]


def music(frame: int, *, beat: bool) -> MusicState:
    return music_state(frame, beat=beat, chroma=CHROMA_VALUES.tolist())


def read(sock: socket.socket, count: int) -> list[OscMessage]:
    return [OscMessage(sock.recv(65536)) for _ in range(count)]


def test_every_frame_carries_analysis_and_status(listener: socket.socket) -> None:
    sender = FeedbackSender([("127.0.0.1", port_of(listener))])
    sender.send_frame(music(30, beat=True), fps=29.5, frame=30)
    messages = {m.address: m.params for m in read(listener, 6)}
    sender.close()
    assert messages[ENERGY] == [0.625]
    assert messages[TEMPO] == [120.0]
    assert messages[CHROMA] == pytest.approx(CHROMA_VALUES.tolist(), abs=1e-6)
    assert messages[FPS] == [29.5]
    assert messages[FRAME] == [30]
    assert messages[BEAT] == [2]


def test_beat_is_sent_only_on_beat_frames(listener: socket.socket) -> None:
    sender = FeedbackSender([("localhost", port_of(listener))])
    sender.send_frame(music(1, beat=False), fps=30.0, frame=1)
    sender.send_frame(music(15, beat=True), fps=30.0, frame=15)
    addresses = [m.address for m in read(listener, 11)]
    sender.close()
    assert addresses == [*PER_FRAME, *PER_FRAME, BEAT]


def test_bundle_mode_sends_one_datagram_per_frame(listener: socket.socket) -> None:
    sender = FeedbackSender([("127.0.0.1", port_of(listener))], bundle=True)
    sender.send_frame(music(2, beat=False), fps=30.0, frame=2)
    sender.send_frame(music(3, beat=False), fps=30.0, frame=3)
    bundles = [OscBundle(listener.recv(65536)) for _ in range(2)]
    sender.close()
    frames = [[m.params for m in b if m.address == FRAME] for b in bundles]
    assert frames == [[[2]], [[3]]]
    assert [m.address for m in bundles[0]] == PER_FRAME


def test_a_failing_target_does_not_stop_the_others(listener: socket.socket) -> None:
    # broadcast without SO_BROADCAST: the kernel refuses every send (EACCES), a real failure
    sender = FeedbackSender([("255.255.255.255", 9), ("127.0.0.1", port_of(listener))])
    sender.send_frame(music(4, beat=False), fps=30.0, frame=4)
    sender.send_frame(music(5, beat=False), fps=30.0, frame=5)
    frames = [m.params for m in read(listener, 10) if m.address == FRAME]
    assert frames == [[4], [5]]
    assert sender.send_failures == 2
    assert sender.frames_sent == 2
    sender.close()


def test_send_after_close_does_not_raise() -> None:
    sender = FeedbackSender([("127.0.0.1", 9)])
    sender.close()
    sender.send_frame(music(6, beat=True), fps=30.0, frame=6)
    assert sender.targets == ()


def test_latest_values_are_kept_for_oscquery() -> None:
    sender = FeedbackSender()
    sender.send_frame(music(15, beat=True), fps=24.0, frame=15)
    sender.send_frame(music(16, beat=False), fps=25.0, frame=16)
    latest = sender.latest()
    assert latest[FRAME] == (16,)
    assert latest[FPS] == (25.0,)
    assert latest[BEAT] == (1,)  # the last beat's count stays
    sender.close()


def test_targets_add_remove_and_limits() -> None:
    sender = FeedbackSender()
    assert sender.add_target("localhost", 9100) == ("127.0.0.1", 9100)
    sender.add_target("127.0.0.1", 9100)
    assert sender.targets == (("127.0.0.1", 9100),)
    assert sender.remove_target("127.0.0.1", 9100)
    assert not sender.remove_target("127.0.0.1", 9100)
    for port in range(MAX_TARGETS):
        sender.add_target("127.0.0.1", 10000 + port)
    with pytest.raises(ControlError, match=f"already {MAX_TARGETS} targets"):
        sender.add_target("127.0.0.1", 9999)
    sender.close()


@pytest.mark.parametrize(
    ("host", "port", "match"),
    [("no such host", 9000, "no such host:9000: cannot resolve"), ("127.0.0.1", 0, "1-65535")],
)
def test_bad_target_names_it(host: str, port: int, match: str) -> None:
    with pytest.raises(ControlError, match=match):
        resolve_target(host, port)


def test_subscribe_and_unsubscribe_over_osc(
    server: OscServer, client: SimpleUDPClient, listener: socket.socket
) -> None:
    port = port_of(listener)
    client.send_message("/hamba/subscribe", port)
    assert barrier(client) == []
    subscribed = server.feedback.targets
    assert subscribed == (("127.0.0.1", port),)
    server.feedback.send_frame(music(7, beat=False), fps=30.0, frame=7)
    assert [m.address for m in read(listener, 5)] == PER_FRAME
    client.send_message("/hamba/unsubscribe", port)
    barrier(client)
    assert server.feedback.targets == ()


def test_server_feeds_the_sender_it_was_given(store: ControlStore, listener: socket.socket) -> None:
    feedback = FeedbackSender()
    with (
        OscServer(store, port=0, feedback=feedback) as server,
        closing(SimpleUDPClient("127.0.0.1", server.port)) as client,
    ):
        client.send_message("/hamba/subscribe", port_of(listener))
        barrier(client)
    assert server.feedback is feedback
    assert feedback.targets == (("127.0.0.1", port_of(listener)),)
    feedback.close()


def test_drops_are_sent_when_the_daemon_gives_them(listener: socket.socket) -> None:
    sender = FeedbackSender([("127.0.0.1", port_of(listener))])
    sender.send_frame(music(4, beat=False), fps=30.0, frame=4, drops=17)
    messages = {m.address: m.params for m in read(listener, 6)}
    sender.close()
    assert messages[DROPS] == [17]
    assert sender.latest()[DROPS] == (17,)


def test_control_changes_from_any_surface_are_echoed_to_the_targets(
    store: ControlStore, server: OscServer, listener: socket.socket
) -> None:
    server.feedback.add_target("127.0.0.1", port_of(listener))
    store.update({"blend": 0.65, "pause": True}, source="web page")
    store.update({"blend": 0.65}, source="web page")  # no change: no echo
    store.update({"chroma_prompts": ("x",) * 12}, source="web page")
    messages = read(listener, 2 + 12)
    assert [(m.address, m.params) for m in messages[:2]] == [
        ("/hamba/blend", [pytest.approx(0.65)]),
        ("/hamba/pause", [True]),
    ]
    assert [m.address for m in messages[2:]] == [f"/hamba/prompt/chroma/{i}" for i in range(12)]
    server.stop()
    store.update({"blend": 0.1}, source="after stop")  # a stopped server echoes nothing
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.recv(65536)


def test_hand_packed_messages_are_python_osc_s_bytes() -> None:
    """The feedback packs its messages itself (speed); they are byte for byte what
    python-osc builds, for every address the engine sends, and bundles too."""
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import build_msg

    from bridge.osc.feedback import MessageEncoder
    from osc_schema.schema import STATUS_ERROR, outgoing

    samples: dict[str, tuple[object, ...]] = {
        "f": (0.3,),
        "i": (123456,),
        "s": ("/hamba/nope",),
        "ss": ("/hamba/nope", "unknown address"),
        "is": (12, "RuntimeError: out of memory"),
        "sii": ("blend", 0, 21),
        "f" * 12: tuple(float(v) for v in CHROMA_VALUES),
    }
    encoder = MessageEncoder()
    tested = []
    for entry in outgoing():
        args = samples[entry.type_tags]
        assert encoder.encode(entry.address, args) == build_msg(entry.address, list(args)).dgram
        tested.append(entry.address)
    assert STATUS_ERROR in tested
    assert CHROMA in tested
    builder = OscBundleBuilder(IMMEDIATELY)
    for address in (ENERGY, FRAME):
        builder.add_content(build_msg(address, [0.5 if address == ENERGY else 3]))
    packed = encoder.bundle([encoder.encode(ENERGY, (0.5,)), encoder.encode(FRAME, (3,))])
    assert packed == builder.build().dgram
    # anything else (a boolean control echoed back, an address outside the schema) goes
    # through python-osc's builder
    for address, args in (("/hamba/pause", (True,)), ("/elsewhere", (1.5, "x"))):
        assert encoder.encode(address, args) == build_msg(address, list(args)).dgram


def test_status_error_reaches_the_listener(listener: socket.socket) -> None:
    from osc_schema.schema import STATUS_ERROR

    sender = FeedbackSender([("127.0.0.1", port_of(listener))])
    sender.send_error(17, "out of memory: render size 256x256")
    message = read(listener, 1)[0]
    sender.close()
    assert message.address == STATUS_ERROR
    assert message.params == [17, "out of memory: render size 256x256"]
    assert sender.latest()[STATUS_ERROR] == (17, "out of memory: render size 256x256")


def test_above_its_rate_the_feedback_leaves_out_frames_but_never_a_beat(
    listener: socket.socket,
) -> None:
    """1,024 frames a second against a cap of 102.4: one frame in ten goes out, on a clock the
    test moves (binary fractions, so the cadence is exact), and every frame a beat falls in."""
    now = [0.0]
    sender = FeedbackSender(
        [("127.0.0.1", port_of(listener))], max_rate=102.4, clock=lambda: now[0]
    )
    beats = {5, 37, 38}
    for frame in range(100):
        now[0] = frame / 1024.0
        sender.send_frame(music(frame, beat=frame in beats), fps=1024.0, frame=frame)
    expected = sorted(set(range(0, 100, 10)) | beats)
    # five messages a frame, and the beat count on each beat frame
    messages = read(listener, 5 * len(expected) + len(beats))
    sender.close()
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.recv(65536)  # nothing more was sent
    assert [m.params[0] for m in messages if m.address == FRAME] == expected
    assert sender.frames_sent == len(expected)


def test_a_feedback_rate_must_be_positive() -> None:
    with pytest.raises(ControlError, match=r"feedback rate: 0\.0 must be above 0"):
        FeedbackSender([], max_rate=0.0)
