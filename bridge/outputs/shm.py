"""Frames in shared memory, for consumers on the same machine on any OS.

The segment is named ``hamba_<name>`` (see :func:`segment_name`) and laid out as documented in
``docs/shared-memory.md``: a 128-byte little-endian header, then ``slot_count`` slots, each a
64-byte slot header (a sequence counter, the frame index, the audio time, a checksum) followed
by the image. The writer fills the slot after the latest one (sequence odd while writing), then
writes the CRC-32 of the index, time and pixels, makes the sequence even and advances
``latest``; it never waits for readers. A reader copies the latest slot and keeps the copy only
when the slot's sequence was even and unchanged across the copy *and* the copy matches its
checksum. The sequence alone relies on the writer's stores becoming visible in program order,
which x86 promises and ARM (Apple silicon) does not, and Python has no memory barriers: the
checksum catches a torn copy whatever order the stores arrive in.

The writer owns the segment: it unlinks it on close, and a segment left behind by a crashed
writer (its process gone, or its state marked closed) is reclaimed by the next writer of the
same name. Neither side lets Python's resource tracker own the segment (before Python 3.13 the
tracker unlinks every segment a process attached to when that process exits).
"""

from __future__ import annotations

import os
import re
import struct
import sys
import weakref
import zlib
from dataclasses import astuple, dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from bridge.outputs.publisher import PublisherBase, RGBAImage
from engine.errors import OutputError
from engine.lifecycle import ClosesOnExit

MAGIC = b"HAMBAFRM"
VERSION = 2
HEADER_SIZE = 128
SLOT_HEADER_SIZE = 64
STATE_STARTING, STATE_LIVE, STATE_CLOSED = 0, 1, 2
FORMATS = {"rgba": 1, "bgra": 2}

# magic, version, header_size, width, height, format, slot_count, slot_size, slot_header_size,
# state, latest, writer_pid, fps: 72 bytes at offset 0, the rest of the header is reserved (zero)
_HEADER = struct.Struct("<8sIIIIIIQIIQQd")
_STATE_OFFSET, _LATEST_OFFSET = 44, 48
_MAX_SEGMENT_CHARS = 30  # macOS allows 31 bytes including the leading "/"


def segment_name(name: str) -> str:
    """The shared-memory segment for an output name: ``"hambaMetal"`` -> ``"hamba_hambaMetal"``.

    Characters other than ASCII letters, digits, ``_`` and ``-`` become ``_``; a result longer
    than 30 characters keeps its first 21 and gets ``_`` plus the CRC-32 of the name in hex.
    """
    if not name:
        raise OutputError("shared-memory output needs a non-empty name")
    full = "hamba_" + re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if len(full) > _MAX_SEGMENT_CHARS:
        full = f"{full[:21]}_{zlib.crc32(name.encode()):08x}"
    return full


@dataclass(frozen=True, eq=False)
class ShmFrame:
    """One complete frame read from shared memory (``image`` is a private copy)."""

    index: int
    time: float
    image: RGBAImage


def _buf(shm: SharedMemory) -> memoryview:
    buf = shm.buf
    if buf is None:
        raise OutputError(f"shared-memory segment {shm.name!r} is closed")
    return buf


def _attach(segment: str, *, create: bool, size: int = 0) -> SharedMemory:
    """Open a segment that Python's resource tracker will not unlink behind our back."""
    if sys.version_info >= (3, 13):
        return SharedMemory(segment, create=create, size=size, track=False)
    shm = SharedMemory(segment, create=create, size=size)
    if os.name == "posix":
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    return shm


def _unlink(shm: SharedMemory) -> None:
    balance = sys.version_info < (3, 13) and os.name == "posix"
    if balance:
        # unlink() unregisters: register first so the tracker's books stay balanced
        resource_tracker.register(shm._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        shm.unlink()
    except FileNotFoundError:
        # a newer writer of the same name reclaimed it already
        if balance:
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # windows frees a segment with its last handle: one that exists is in use
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class _Header:
    magic: bytes
    version: int
    header_size: int
    width: int
    height: int
    format: int
    slot_count: int
    slot_size: int
    slot_header_size: int
    state: int
    latest: int
    writer_pid: int
    fps: float

    @classmethod
    def read(cls, buf: memoryview) -> _Header:
        return cls(*_HEADER.unpack_from(buf, 0))


class _Segment:
    """A mapped segment and numpy views over its live fields and slots."""

    def __init__(self, shm: SharedMemory, header: _Header) -> None:
        self.shm = shm
        self.header = header
        buf, n, size = _buf(shm), header.slot_count, header.slot_size
        base = header.header_size

        def field(offset: int, dtype: str) -> np.ndarray:
            return np.ndarray((n,), dtype, buf, base + offset, (size,))

        self.state: np.ndarray = np.ndarray((1,), "<u4", buf, _STATE_OFFSET)
        self.latest: np.ndarray = np.ndarray((1,), "<u8", buf, _LATEST_OFFSET)
        self.seqs = field(0, "<u8")
        self.indices = field(8, "<i8")
        self.times = field(16, "<f8")
        self.checksums = field(24, "<u4")
        # the bytes the checksum covers before the pixels: index and time
        self.stamps: np.ndarray = np.ndarray((n, 16), np.uint8, buf, base + 8, (size, 1))
        h, w = header.height, header.width
        self.images: np.ndarray = np.ndarray(
            (n, h, w, 4), np.uint8, buf, base + header.slot_header_size, (size, w * 4, 4, 1)
        )

    def release(self, unlink: bool) -> None:
        # views pin the mapping: drop them before closing it
        views = ("state", "latest", "seqs", "indices", "times", "checksums", "stamps", "images")
        for attr in views:
            self.__dict__.pop(attr, None)
        if unlink:
            _unlink(self.shm)
        self.shm.close()


def _slot_size(width: int, height: int) -> int:
    return -(-(SLOT_HEADER_SIZE + width * height * 4) // 64) * 64


def slot_checksum(stamp: np.ndarray, image: np.ndarray) -> int:
    """CRC-32 (zlib's) of a slot's index and time bytes followed by its pixels."""
    return zlib.crc32(image.data, zlib.crc32(stamp.data))


class ShmOutput(PublisherBase):
    """Writes frames into the segment ``hamba_<name>`` (layout: ``docs/shared-memory.md``).

    ``slots`` frames are kept (at least 2; with 3, a reader has two frame periods to copy the
    latest one before the writer comes back to it); ``pixel_format`` is ``"rgba"`` or
    ``"bgra"`` (converted once, while copying into the slot).
    """

    def __init__(
        self, name: str = "hambaMetal", *, slots: int = 3, pixel_format: str = "rgba"
    ) -> None:
        self.segment = segment_name(name)
        super().__init__(f"shm:{self.segment}")
        if slots < 2:
            raise OutputError(f"output {self.name!r}: slots must be at least 2, got {slots}")
        if pixel_format not in FORMATS:
            raise OutputError(
                f"output {self.name!r}: pixel_format {pixel_format!r} is not one of {sorted(FORMATS)}"
            )
        self.slots = slots
        self.pixel_format = pixel_format
        self._seg: _Segment | None = None
        self._count = 0
        self._finalizer: weakref.finalize[[bool], ShmOutput] | None = None

    def _open(self, width: int, height: int, fps: float) -> None:
        slot_size = _slot_size(width, height)
        shm = self._create(HEADER_SIZE + self.slots * slot_size)
        header = _Header(
            MAGIC, VERSION, HEADER_SIZE, width, height, FORMATS[self.pixel_format], self.slots,
            slot_size, SLOT_HEADER_SIZE, STATE_STARTING, 0, os.getpid(), fps,
        )  # fmt: skip
        buf = _buf(shm)
        # a new segment is zero-filled; the magic goes in last, so a reader that attaches
        # meanwhile sees an all-zero magic and waits instead of reading half a header
        _HEADER.pack_into(buf, 0, bytes(8), *astuple(header)[1:])
        buf[: len(MAGIC)] = MAGIC
        self._seg = _Segment(shm, header)
        self._count = 0
        # unlink even if the process exits without close()
        self._finalizer = weakref.finalize(self, self._seg.release, True)
        self._seg.state[0] = STATE_LIVE

    def _create(self, size: int) -> SharedMemory:
        try:
            return _attach(self.segment, create=True, size=size)
        except FileExistsError:
            self._reclaim()
        try:
            return _attach(self.segment, create=True, size=size)
        except OSError as exc:
            raise OutputError(f"output {self.name!r}: cannot create the segment: {exc}") from exc

    def _reclaim(self) -> None:
        """Take over a segment left by a crashed writer; refuse one that is alive or foreign."""
        try:
            old = _attach(self.segment, create=False)
        except FileNotFoundError:
            return  # gone meanwhile
        try:
            header = _Header.read(_buf(old)) if old.size >= _HEADER.size else None
            if header is None or header.magic not in (MAGIC, bytes(8)):
                raise OutputError(
                    f"shared-memory segment {self.segment!r} exists and is not a hambaMetal "
                    f"frame segment; remove it (/dev/shm/{self.segment} on Linux) or pick "
                    "another output name"
                )
            if header.state != STATE_CLOSED and _pid_alive(header.writer_pid):
                raise OutputError(
                    f"shared-memory segment {self.segment!r} is in use by a running writer "
                    f"(pid {header.writer_pid}); pick another output name"
                )
            # tell readers still mapped to the old segment to re-attach
            struct.pack_into("<I", _buf(old), _STATE_OFFSET, STATE_CLOSED)
            _unlink(old)
        finally:
            old.close()

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        seg = self._seg
        assert seg is not None
        k = self._count % self.slots
        seq = int(seg.seqs[k])
        seg.seqs[k] = seq + 1  # odd: being written
        seg.indices[k] = index
        seg.times[k] = time
        self._copy_pixels(seg.images[k], frame)
        # after the pixels: a reader whose copy mixes two frames finds it does not match
        seg.checksums[k] = slot_checksum(seg.stamps[k], seg.images[k])
        seg.seqs[k] = seq + 2  # even: complete
        self._count += 1
        seg.latest[0] = self._count

    def _copy_pixels(self, slot: np.ndarray, frame: RGBAImage) -> None:
        """Write the frame into a slot's image, in the segment's pixel format."""
        if self.pixel_format == "bgra":
            np.take(frame, (2, 1, 0, 3), axis=2, out=slot)
        else:
            slot[...] = frame

    def _close(self) -> None:
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.state[0] = STATE_CLOSED
        if self._finalizer is not None:
            self._finalizer()  # release + unlink, once
            self._finalizer = None


ShmFrameWriter = ShmOutput
"""The writer side of the shared-memory protocol (an alias of :class:`ShmOutput`)."""


class ShmFrameReader(ClosesOnExit):
    """Reads the latest complete frame an :class:`ShmOutput` of the same ``name`` wrote.

    The reader attaches lazily: :meth:`read` returns None while no writer is live, and it
    re-attaches by itself when a writer restarts (even after a crash). ``torn`` counts the
    reads that met a slot being rewritten and retried; ``mismatched`` those of them whose copy
    did not match the slot's checksum (the sequence looked stable).
    """

    def __init__(self, name: str = "hambaMetal", *, retries: int = 32) -> None:
        self.segment = segment_name(name)
        self.retries = retries
        self.torn = 0
        self.mismatched = 0
        self._seg: _Segment | None = None
        self._last_count = 0
        self._attach()

    @property
    def connected(self) -> bool:
        """True while attached to the segment of a live writer (whose process still runs)."""
        seg = self._seg
        return (
            seg is not None
            and int(seg.state[0]) == STATE_LIVE
            and _pid_alive(seg.header.writer_pid)
        )

    @property
    def width(self) -> int:
        return self._seg.header.width if self._seg else 0

    @property
    def height(self) -> int:
        return self._seg.header.height if self._seg else 0

    @property
    def fps(self) -> float:
        return self._seg.header.fps if self._seg else 0.0

    @property
    def pixel_format(self) -> str | None:
        if self._seg is None:
            return None
        return {v: k for k, v in FORMATS.items()}.get(self._seg.header.format)

    def read(self, *, new_only: bool = False) -> ShmFrame | None:
        """The latest complete frame, or None (no live writer; with ``new_only``, nothing new)."""
        seg = self._live_segment()
        if seg is None:
            return None
        slots = seg.header.slot_count
        for _ in range(self.retries):
            count = int(seg.latest[0])
            if count == 0 or (new_only and count == self._last_count):
                return None
            k = (count - 1) % slots
            before = int(seg.seqs[k])
            if before & 1:
                self.torn += 1
                continue
            stamp = seg.stamps[k].copy()
            checksum = int(seg.checksums[k])
            image = seg.images[k].copy()
            if int(seg.seqs[k]) != before:
                self.torn += 1
                continue
            if slot_checksum(stamp, image) != checksum:
                self.torn += 1
                self.mismatched += 1
                continue
            self._last_count = count
            index, time = struct.unpack("<qd", stamp.tobytes())
            return ShmFrame(index, time, image)
        return None

    def close(self) -> None:
        """Detach (the segment stays: it belongs to the writer)."""
        if self._seg is not None:
            self._seg.release(unlink=False)
            self._seg = None

    def _live_segment(self) -> _Segment | None:
        if self._seg is not None and int(self._seg.state[0]) == STATE_CLOSED:
            self.close()  # the writer closed or was replaced: look for a new segment
        if self._seg is None:
            self._attach()
        return self._seg

    def _attach(self) -> None:
        try:
            shm = _attach(self.segment, create=False)
        except (FileNotFoundError, ValueError):
            return  # no writer yet (or its segment is not sized yet)
        header = _Header.read(_buf(shm)) if shm.size >= _HEADER.size else None
        if header is None or header.magic == bytes(8):
            shm.close()  # a writer is still setting up
            return
        problem = self._check(header, shm.size)
        if problem:
            shm.close()
            raise OutputError(f"shared-memory segment {self.segment!r}: {problem}")
        if header.state != STATE_LIVE:
            shm.close()  # starting up, or closed
            return
        self._seg = _Segment(shm, header)
        self._last_count = 0

    @staticmethod
    def _check(header: _Header, size: int) -> str | None:
        if header.magic != MAGIC:
            return f"not a hambaMetal frame segment (magic {header.magic!r})"
        if header.version != VERSION:
            return f"layout version {header.version}, this reader reads version {VERSION}"
        if header.format not in FORMATS.values():
            return f"unknown pixel format {header.format}"
        needed = header.header_size + header.slot_count * header.slot_size
        if header.slot_count < 1 or needed > size:
            return f"header says {needed} bytes, the segment has {size}"
        return None


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    slots: int = 3,
    pixel_format: str = "rgba",
) -> ShmOutput:
    """Registry factory for the ``shm`` spec."""
    return ShmOutput(name, slots=slots, pixel_format=pixel_format)
