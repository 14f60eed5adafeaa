"""Shared-memory frames between real processes: exact bytes, no torn frames, clean segments.

Writers and readers run as separate Python processes (``shm_procs``), each with its own
resource tracker, as the engine and a VJ tool would.
"""

from __future__ import annotations

import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.outputs import create_output
from bridge.outputs.shm import (
    HEADER_SIZE,
    SLOT_HEADER_SIZE,
    ShmFrameReader,
    ShmFrameWriter,
    ShmOutput,
    _attach,
    _slot_size,
    segment_name,
)
from engine.errors import OutputError
from tests.bridge.outputs.patterns import pattern_frame, read_stamp

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "shared-memory.md"


class Proc:
    """A helper process whose stdout lines arrive on a queue (waits are bounded)."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.bridge.outputs.shm_procs", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic())).strip()
            except queue.Empty:
                raise AssertionError(f"no {text!r} from the helper: {self.stderr()}") from None
            if line.startswith(text):
                return line

    def result(self, timeout: float = 30.0) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.expect("{", timeout))
        assert self.popen.wait(timeout) == 0, self.stderr()
        return data

    def stderr(self) -> str:
        if self.popen.poll() is None:
            return "(still running)"
        assert self.popen.stderr is not None
        return self.popen.stderr.read()

    def kill(self) -> None:
        self.popen.kill()  # SIGKILL: no cleanup of any kind
        self.popen.wait(10)


@pytest.fixture
def name() -> Iterator[str]:
    """A name no other test (or engineer's run) uses; its segment is gone at the end."""
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    assert not segment_exists(segment_name(value)), "a test left its segment behind"


def _buf(segment: SharedMemory) -> memoryview:
    """The bytes of an attached segment (``buf`` is None only once it is closed)."""
    assert segment.buf is not None
    return segment.buf


def segment_exists(segment: str) -> bool:
    try:
        shm = _attach(segment, create=False)
    except FileNotFoundError:
        return False
    shm.close()
    return True


def read_until(reader: ShmFrameReader, predicate: Any, timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        frame = reader.read()
        if frame is not None and predicate(frame):
            return frame
        time.sleep(0.002)
    raise AssertionError("no matching frame arrived")


def test_segment_name_rules() -> None:
    assert segment_name("hambaMetal") == "hamba_hambaMetal"
    assert segment_name("my show!") == "hamba_my_show_"
    long_a, long_b = segment_name("x" * 40 + "a"), segment_name("x" * 40 + "b")
    assert len(long_a) == 30
    assert long_a != long_b
    assert re.fullmatch(r"hamba_x{15}_[0-9a-f]{8}", long_a)
    with pytest.raises(OutputError, match="non-empty"):
        segment_name("")


def test_round_trip_in_one_process(name: str) -> None:
    reader = ShmFrameReader(name)
    # no writer yet
    assert reader.read() is None
    assert not reader.connected
    with ShmOutput(name) as out:
        out.open(64, 48, 25.0)
        assert reader.read() is None  # attached, nothing published
        assert (reader.width, reader.height, reader.fps) == (64, 48, 25.0)
        frame = pattern_frame(3, 64, 48)
        out.publish(frame, 3, 0.12)
        got = reader.read()
        assert got is not None
        assert got.index == 3
        assert got.time == 0.12
        np.testing.assert_array_equal(got.image, frame)
        assert got.image.flags.c_contiguous
        assert got.image.flags.writeable
        assert reader.read(new_only=True) is None  # nothing newer
        assert reader.read() is not None  # the latest again
    # closed: state 2, then gone
    assert reader.read() is None
    assert not reader.connected
    reader.close()


def test_bgra_is_converted_while_copying(name: str) -> None:
    with ShmOutput(name, pixel_format="bgra") as out, ShmFrameReader(name) as reader:
        out.open(8, 4, 30.0)
        frame = pattern_frame(1, 8, 4)
        out.publish(frame, 0, 0.0)
        got = reader.read()
        assert reader.pixel_format == "bgra"
        assert got is not None
        np.testing.assert_array_equal(got.image, frame[..., [2, 1, 0, 3]])


def test_bad_writer_options_name_the_output() -> None:
    with pytest.raises(OutputError, match="slots must be at least 2"):
        ShmOutput("x", slots=1)
    with pytest.raises(OutputError, match=r"shm:hamba_x.*pixel_format 'yuv'"):
        ShmOutput("x", pixel_format="yuv")


def test_frames_cross_processes_byte_exact(name: str) -> None:
    writer = Proc("write-pattern", name, "--width", "96", "--height", "64", "--seconds", "30")
    try:
        writer.expect("ready")
        with ShmFrameReader(name) as reader:
            seen: set[int] = set()
            end = time.monotonic() + 10
            while len(seen) < 5 and time.monotonic() < end:
                frame = reader.read(new_only=True)
                if frame is None:
                    time.sleep(0.002)
                    continue
                np.testing.assert_array_equal(frame.image, pattern_frame(frame.index, 96, 64))
                assert frame.time == pytest.approx(frame.index / 30.0)
                seen.add(frame.index)
            assert len(seen) >= 5
    finally:
        writer.kill()
    # killed, so the segment is stale: clean it the way a restarted engine would
    with ShmOutput(name) as out:
        out.open(8, 8, 30.0)


@pytest.mark.slow
def test_five_seconds_flat_out_never_tears(name: str) -> None:
    """Writer as fast as it can (another process), reader polling: every frame checks out."""
    writer = Proc("write-stress", name, "--width", "256", "--height", "256", "--seconds", "5")
    writer.expect("ready")
    reader = ShmFrameReader(name)
    reads, distinct, last = 0, 0, -1
    while writer.popen.poll() is None:
        frame = reader.read()
        if frame is None:
            continue
        intact, stamped_index = read_stamp(frame.image)
        assert intact, f"torn frame at index {frame.index}"
        assert stamped_index == frame.index
        assert frame.time == frame.index / 1000.0
        assert frame.index >= last, f"index went back from {last} to {frame.index}"
        distinct += frame.index != last
        last = frame.index
        reads += 1
    published = writer.result()["published"]
    reader.close()
    print(
        f"writer published {published}, reader checked {reads} reads of {distinct} frames, "
        f"{reader.torn} torn reads retried"
    )
    assert distinct >= 50
    assert last < published
    assert not segment_exists(segment_name(name))  # the writer closed: segment unlinked


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_reader_process_leaving_does_not_stop_the_writer(name: str, ending: str) -> None:
    with ShmOutput(name) as out:
        out.open(32, 32, 30.0)
        reader = Proc("read", name, "--count", "1000000", "--seconds", "30")
        index = 0
        out.publish(pattern_frame(index, 32, 32), index, 0.0)
        reader.expect("ready")
        if ending == "sigkill":
            reader.kill()
        else:
            reader.popen.terminate()
            reader.popen.wait(10)
        # the reader's resource tracker must not have unlinked the writer's segment
        for index in range(1, 20):
            out.publish(pattern_frame(index, 32, 32), index, index / 30.0)
        assert segment_exists(out.segment)
        second = Proc("read", name, "--count", "1", "--seconds", "10")
        assert second.result()["indices"] == [19]


def test_killed_writer_is_reclaimed_by_the_next_one(name: str) -> None:
    segment = segment_name(name)
    writer = Proc("write-pattern", name, "--seconds", "0")
    writer.expect("ready")
    reader = ShmFrameReader(name)
    read_until(reader, lambda f: f.index >= 2)
    assert reader.connected
    writer.kill()
    assert segment_exists(segment)  # stale: the writer could not clean up
    stale = reader.read()
    assert stale is not None  # an attached reader still sees the last frame
    assert not reader.connected  # ... and can tell that its writer is gone
    with ShmOutput(name) as again:
        again.open(16, 8, 30.0)  # reclaims the stale segment
        again.publish(pattern_frame(1000, 16, 8), 1000, 1.0)
        fresh = read_until(reader, lambda f: f.index == 1000)  # the old reader re-attaches
        assert fresh.image.shape == (8, 16, 4)
    reader.close()
    assert not segment_exists(segment)


def test_live_writer_is_not_taken_over(name: str) -> None:
    with ShmOutput(name) as first:
        first.open(8, 8, 30.0)
        with pytest.raises(OutputError, match=rf"hamba_{name}.*in use.*pid {os.getpid()}"):
            ShmOutput(name).open(8, 8, 30.0)
        assert segment_exists(first.segment)


def test_foreign_segment_is_refused(name: str) -> None:
    segment = segment_name(name)
    foreign = _attach(segment, create=True, size=4096)
    try:
        _buf(foreign)[:8] = b"NOTOURS!"
        with pytest.raises(OutputError, match=rf"{segment}.*not a hambaMetal frame segment"):
            ShmOutput(name).open(8, 8, 30.0)
        with pytest.raises(OutputError, match=rf"{segment}.*not a hambaMetal"):
            ShmFrameReader(name)
    finally:
        _buf(foreign)[:8] = bytes(8)
        foreign.close()
        with ShmOutput(name) as out:  # an all-zero header counts as an abandoned start-up
            out.open(8, 8, 30.0)


def test_reader_retries_a_slot_being_rewritten(name: str) -> None:
    """A slot whose sequence is odd (the writer is in it) is never returned."""
    with ShmOutput(name) as out, ShmFrameReader(name) as reader:
        out.open(8, 8, 30.0)
        out.publish(pattern_frame(0, 8, 8), 0, 0.0)
        raw = _attach(out.segment, create=False)
        try:
            seq = struct.unpack_from("<Q", _buf(raw), HEADER_SIZE)[0]
            struct.pack_into("<Q", _buf(raw), HEADER_SIZE, seq + 1)  # slot 0: "being written"
            assert reader.read() is None
            assert reader.torn == reader.retries
            struct.pack_into("<Q", _buf(raw), HEADER_SIZE, seq)
            got = reader.read()
            assert got is not None
            assert got.index == 0
        finally:
            raw.close()


def test_registry_builds_the_shm_output(name: str) -> None:
    out = create_output("shm", name=name, slots=4)
    assert isinstance(out, ShmOutput)
    assert ShmFrameWriter is ShmOutput
    assert out.name == f"shm:hamba_{name}"
    assert out.slots == 4


def _doc_reader() -> dict[str, Any]:
    text = DOC.read_text()
    section = text.split("## A reader in plain Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "hamba_shm"}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)
    return namespace


def test_documented_reader_reads_what_the_writer_wrote(name: str) -> None:
    """The numpy-only reader printed in docs/shared-memory.md follows the real layout."""
    doc = _doc_reader()
    with ShmOutput(name) as out:
        out.open(40, 30, 30.0)
        shm = doc["open_segment"](out.segment)
        try:
            assert doc["read_latest"](shm) is None
            for index in range(5):  # wraps around the 3 slots
                frame = pattern_frame(index, 40, 30)
                out.publish(frame, index, index / 30.0)
                got_index, got_time, image = doc["read_latest"](shm)
                assert (got_index, got_time) == (index, index / 30.0)
                np.testing.assert_array_equal(image, frame)
            out.close()
            assert doc["read_latest"](shm) is None  # state 2: closed
        finally:
            shm.close()


class _Interrupted(ShmOutput):
    """A writer that stops halfway through its pixel copy to let the test look at the slot."""

    def __init__(self, name: str, probe: Any) -> None:
        super().__init__(name)
        self.probe = probe

    def _copy_pixels(self, slot: np.ndarray, frame: np.ndarray) -> None:
        half = frame.shape[0] // 2
        slot[:half] = frame[:half]
        self.probe()
        slot[half:] = frame[half:]


def _slot_seq(segment: str, slot: int, slot_size: int) -> int:
    raw = _attach(segment, create=False)
    try:
        return int(struct.unpack_from("<Q", _buf(raw), HEADER_SIZE + slot * slot_size)[0])
    finally:
        raw.close()


def test_a_slot_is_marked_odd_while_the_writer_fills_it(name: str) -> None:
    """The odd mark is what tells a reader to come back later: without it a reader has only
    the checksum (this test fails when the writer's first increment is removed)."""
    seen: list[int] = []

    def probe() -> None:
        seen.append(_slot_seq(out.segment, len(seen) % 3, size))

    out = _Interrupted(name, probe)
    with out:
        out.open(16, 8, 30.0)
        size = _slot_size(16, 8)
        for index in range(4):
            out.publish(pattern_frame(index, 16, 8), index, index / 30.0)
    assert seen
    assert all(seq % 2 == 1 for seq in seen), seen


def test_a_copy_torn_behind_a_stable_sequence_is_caught_by_the_checksum(name: str) -> None:
    """What a reader on ARM can meet: the slot's sequence even and unchanged, but some of the
    pixels already those of the next frame (stores seen out of order). It must not come back."""
    with ShmOutput(name) as out, ShmFrameReader(name) as reader:
        out.open(16, 8, 30.0)
        out.publish(pattern_frame(0, 16, 8), 0, 0.0)
        assert reader.read() is not None
        raw = _attach(out.segment, create=False)
        try:
            start = HEADER_SIZE + SLOT_HEADER_SIZE
            newer = pattern_frame(1, 16, 8).tobytes()
            _buf(raw)[start : start + 64] = newer[:64]  # the first rows of the next frame
            assert reader.read() is None
            assert reader.mismatched == reader.retries == reader.torn
            doc = _doc_reader()  # the documented reader refuses it too
            assert doc["read_latest"](raw) is None
        finally:
            raw.close()
        out.publish(pattern_frame(2, 16, 8), 2, 2 / 30.0)
        got = reader.read()
        assert got is not None
        assert got.index == 2
        np.testing.assert_array_equal(got.image, pattern_frame(2, 16, 8))


def test_checksum_covers_index_and_time(name: str) -> None:
    with ShmOutput(name) as out, ShmFrameReader(name) as reader:
        out.open(8, 8, 30.0)
        out.publish(pattern_frame(0, 8, 8), 5, 0.5)
        raw = _attach(out.segment, create=False)
        try:
            struct.pack_into("<q", _buf(raw), HEADER_SIZE + 8, 6)  # another index, same pixels
            assert reader.read() is None
            assert reader.mismatched > 0
        finally:
            raw.close()
