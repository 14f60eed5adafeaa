"""Audio sources for real-time use: a live input device, or a file played at real-time pace.

Both are ``AudioSource``s: ``start()``/``stop()`` (or ``with``), ``read()`` for whatever audio
has arrived, ``blocks()`` for fixed-size blocks as they arrive, and ``time`` (seconds of audio
consumed so far), so the daemon treats a file and a microphone alike. Samples come out mono
float32 at the source's ``sample_rate``.

The live input's PortAudio callback runs on the audio thread and only copies into a
preallocated ``RingBuffer`` (one producer, one consumer, no locks, no analysis). sounddevice is
imported when a device is first used: it needs the PortAudio library.
"""

from __future__ import annotations

import abc
import importlib
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio.analyzer import load_audio
from engine.audio.types import FloatArray
from engine.config import AudioConfig
from engine.errors import AudioError
from engine.lifecycle import StartsOnEnter


@dataclass(frozen=True)
class InputDevice:
    """An audio input PortAudio offers (what ``hamba devices`` lists)."""

    index: int
    name: str
    channels: int
    default_sample_rate: float
    host_api: str
    is_default: bool


def _sounddevice() -> ModuleType:
    """The sounddevice module; an ``AudioError`` when PortAudio is not installed."""
    try:
        # by name: sounddevice has no type information, a module is what this returns
        sounddevice = importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:
        raise AudioError(
            "audio devices need the PortAudio library (Linux: apt-get install libportaudio2; "
            f"the sounddevice wheels bring it on macOS and Windows): {exc}"
        ) from None
    return sounddevice


# streams this module has open: PortAudio must not be restarted under them
_open_streams = 0


def refresh_devices() -> bool:
    """Make PortAudio enumerate the devices again (it lists them once, when it starts).

    Needed when a sound server starts after the first device query. Restarting PortAudio would
    break running streams, so while any of ours is open this does nothing and returns False.
    """
    if _open_streams:
        return False
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()
    return True


def _stream_opened(change: int) -> None:
    global _open_streams
    _open_streams += change


def _start_or_close(stream: Any, where: str) -> None:
    """Start a PortAudio stream; if it will not start, close it and say where."""
    sd = _sounddevice()
    try:
        stream.start()
    except sd.PortAudioError as exc:
        stream.close()
        raise AudioError(f"{where}: cannot start ({exc})") from None


def list_input_devices() -> list[InputDevice]:
    """Every device with input channels, in PortAudio's order."""
    sd = _sounddevice()
    try:
        default_input = sd.default.device[0]
        host_apis = sd.query_hostapis()
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioError(f"cannot list audio devices: {exc}") from None
    inputs = []
    for info in devices:
        if info["max_input_channels"] <= 0:
            continue
        inputs.append(
            InputDevice(
                index=int(info["index"]),
                name=str(info["name"]),
                channels=int(info["max_input_channels"]),
                default_sample_rate=float(info["default_samplerate"]),
                host_api=str(host_apis[info["hostapi"]]["name"]),
                is_default=int(info["index"]) == default_input,
            )
        )
    return inputs


def resolve_input_device(device: str | int | None) -> InputDevice:
    """The input device an index, a name or a part of a name (any case) picks; None: the default.

    A name matching one device exactly wins over partial matches; an unknown or ambiguous name
    is an ``AudioError`` that names it and lists the inputs there are.
    """
    try:
        inputs = list_input_devices()
    except AudioError as exc:
        raise AudioError(f"audio input device {device!r}: {exc}") from None
    if not inputs:
        raise AudioError(f"audio input device {device!r}: this machine has no audio inputs")
    listing = "; ".join(f"{d.index}: {d.name}" for d in inputs)
    if device is None:
        for candidate in inputs:
            if candidate.is_default:
                return candidate
        return inputs[0]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        for candidate in inputs:
            if candidate.index == index:
                return candidate
        raise AudioError(f"audio input device {device!r} not found; inputs: {listing}")
    wanted = device.strip().lower()
    exact = [d for d in inputs if d.name.lower() == wanted]
    if exact:
        return exact[0]
    partial = [d for d in inputs if wanted in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = "; ".join(f"{d.index}: {d.name}" for d in partial)
        raise AudioError(f"audio input device {device!r} is ambiguous, it matches: {names}")
    raise AudioError(f"audio input device {device!r} not found; inputs: {listing}")


class RingBuffer:
    """A preallocated single-producer single-consumer ring of ``(frames, channels)`` float32.

    ``write`` (the audio thread) and ``read`` (the consumer) each own one counter of frames
    written / read since the start; neither takes a lock: a Python int assignment is atomic. A
    consumer that falls more than ``capacity`` frames behind loses the oldest audio, counted in
    ``dropped``.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError(f"ring buffer needs a positive size, got {capacity} x {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._data = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._written = 0  # only the producer assigns it
        self._read = 0  # only the consumer assigns it
        self.dropped = 0  # frames the consumer lost to overruns (consumer side)

    @property
    def available(self) -> int:
        """Frames written and not read yet (at most ``capacity``)."""
        return min(self._written - self._read, self.capacity)

    def write(self, frames: npt.NDArray[np.float32]) -> None:
        """Copy ``(n, channels)`` frames in; never blocks, never allocates a buffer."""
        n = frames.shape[0]
        # a block larger than the ring overruns it at once: only its newest frames fit
        skip = max(0, n - self.capacity)
        kept = n - skip
        start = (self._written + skip) % self.capacity
        first = min(kept, self.capacity - start)
        self._data[start : start + first] = frames[skip : skip + first]
        if first < kept:
            self._data[: kept - first] = frames[skip + first :]
        self._written += n

    def read(self, max_frames: int | None = None) -> FloatArray:
        """Up to ``max_frames`` of the unread frames, downmixed to mono float32."""
        written = self._written
        if written - self._read > self.capacity:
            self.dropped += written - self._read - self.capacity
            self._read = written - self.capacity
        n = written - self._read
        if max_frames is not None:
            n = min(n, max_frames)
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out = np.empty(n, dtype=np.float32)
        np.mean(self._data[start : start + first], axis=1, out=out[:first])
        if first < n:
            np.mean(self._data[: n - first], axis=1, out=out[first:])
        # the producer may have lapped us while we copied: those frames are suspect, count them
        lapped = self._written - self.capacity - self._read
        if lapped > 0:
            self.dropped += min(lapped, n)
        self._read += n
        return out


class AudioSource(StartsOnEnter, abc.ABC):
    """Where real-time audio comes from: mono float32 at ``sample_rate``, in ``block_size`` blocks."""

    sample_rate: int
    block_size: int

    @abc.abstractmethod
    def start(self) -> None:
        """Begin producing audio (opens the device or starts the clock)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop producing audio and release the device; safe to call twice."""

    @abc.abstractmethod
    def read(self, max_samples: int | None = None) -> FloatArray:
        """The audio that has arrived since the last read (possibly none), at most ``max_samples``."""

    @property
    @abc.abstractmethod
    def available(self) -> int:
        """Samples that a ``read`` would return now."""

    @property
    @abc.abstractmethod
    def exhausted(self) -> bool:
        """True once no audio beyond what is ``available`` will come (a file's end, a stop)."""

    @property
    def finished(self) -> bool:
        """True once everything has been read and no more audio will come."""
        return self.exhausted and self.available == 0

    @property
    @abc.abstractmethod
    def time(self) -> float:
        """Seconds of audio consumed (read) so far."""

    def blocks(self, timeout: float | None = None) -> Iterator[FloatArray]:
        """Yield ``block_size`` blocks as they arrive; the last one of a finished source may be shorter.

        Starts the source if it is not running. Waits by sleeping (never on a lock the audio
        thread holds); ``timeout`` seconds without a full block ends the iteration.
        """
        self.start()
        waited_since = _time.monotonic()
        while True:
            if self.available >= self.block_size:
                waited_since = _time.monotonic()
                yield self.read(self.block_size)
                continue
            if self.exhausted:
                if self.available:
                    yield self.read()
                return
            if timeout is not None and _time.monotonic() - waited_since > timeout:
                return
            _time.sleep(self._wait_hint())

    def _wait_hint(self) -> float:
        """How long to sleep while a block fills (a quarter of a block by default)."""
        return 0.25 * self.block_size / self.sample_rate


class LiveAudioSource(AudioSource):
    """Audio from an input device (by index, name or part of a name; None: the default)."""

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int = 44100,
        block_size: int = 512,
        channels: int = 1,
        buffer_seconds: float = 4.0,
    ) -> None:
        if sample_rate <= 0 or block_size <= 0 or channels <= 0:
            raise AudioError(
                f"audio input {device!r}: sample rate, block size and channels must be positive"
            )
        self.device = device
        self.sample_rate = int(sample_rate)
        self.block_size = int(block_size)
        self.channels = int(channels)
        self.ring = RingBuffer(max(int(buffer_seconds * sample_rate), 4 * block_size), channels)
        self.status_errors = 0  # callbacks that reported an over- or underflow
        self._stream: Any = None
        self._consumed = 0

    @classmethod
    def from_config(cls, config: AudioConfig, sample_rate: int = 44100) -> LiveAudioSource:
        """The input ``config.device`` names, with its block size and channel count."""
        return cls(config.device, sample_rate, config.block_size, config.channels)

    def start(self) -> None:
        if self._stream is not None:
            return
        info = self._find_device()  # first: its errors name the device, PortAudio's too
        sd = _sounddevice()
        if self.channels > info.channels:
            raise AudioError(
                f"audio input device {info.name!r} has {info.channels} channels, "
                f"{self.channels} were asked for"
            )
        try:
            stream = sd.InputStream(
                device=info.index,
                samplerate=self.sample_rate,
                blocksize=self.block_size,
                channels=self.channels,
                dtype="float32",
                callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"audio input device {info.name!r}: cannot open ({exc})") from None
        _start_or_close(stream, f"audio input device {info.name!r}")
        self._stream = stream
        _stream_opened(+1)

    def _find_device(self) -> InputDevice:
        try:
            return resolve_input_device(self.device)
        except AudioError as first:
            # a sound server may have started since PortAudio listed its devices: ask again
            try:
                refreshed = refresh_devices()
            except AudioError:  # no PortAudio at all: the first error says so, naming the device
                refreshed = False
            if not refreshed:
                raise first from None
            return resolve_input_device(self.device)

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # the audio thread: copy and count, nothing else
        if status:
            self.status_errors += 1
        self.ring.write(indata)

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
            _stream_opened(-1)

    def read(self, max_samples: int | None = None) -> FloatArray:
        samples = self.ring.read(max_samples)
        self._consumed += samples.size
        return samples

    @property
    def available(self) -> int:
        return self.ring.available

    @property
    def exhausted(self) -> bool:
        return self._stream is None

    @property
    def time(self) -> float:
        return self._consumed / self.sample_rate


class FileAudioSource(AudioSource):
    """A decoded file handed out at real-time pace against a monotonic clock.

    ``realtime=False`` hands everything out at once (offline renders, tests); ``loop`` starts
    over at the end; ``audible`` also plays the file through the default output device.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 44100,
        block_size: int = 512,
        realtime: bool = True,
        audible: bool = False,
        loop: bool = False,
        output_device: str | int | None = None,
    ) -> None:
        if block_size <= 0:
            raise AudioError(f"{path}: block size must be positive, got {block_size}")
        self.path = Path(path)
        self.samples, self.sample_rate = load_audio(self.path, sample_rate)
        self.block_size = int(block_size)
        self.realtime = realtime
        self.audible = audible
        self.loop = loop
        self.output_device = output_device
        self._position = 0  # samples handed out (grows past the length when looping)
        self._started_at: float | None = None
        self._stopped = False
        self._output: Any = None
        self._played = 0  # samples the output callback has played

    @property
    def duration(self) -> float:
        """Length of the file in seconds."""
        return self.samples.size / self.sample_rate

    def start(self) -> None:
        if self._started_at is not None and not self._stopped:
            return
        self._stopped = False
        self._started_at = _time.monotonic() - self._position / self.sample_rate
        if self.audible:
            self._open_output()

    def _open_output(self) -> None:
        sd = _sounddevice()
        self._played = self._position
        where = f"{self.path}: output device {self.output_device!r}"
        try:
            output = sd.OutputStream(
                device=self.output_device,
                samplerate=self.sample_rate,
                blocksize=self.block_size,
                channels=1,
                dtype="float32",
                callback=self._play,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"{where}: cannot open ({exc})") from None
        _start_or_close(output, where)
        self._output = output
        _stream_opened(+1)

    def _play(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # the audio thread: copy the next samples, silence after the end
        total = self.samples.size
        done = 0
        while done < frames:
            at = self._played % total if self.loop else self._played
            if at >= total:
                outdata[done:, 0] = 0.0
                break
            n = min(frames - done, total - at)
            outdata[done : done + n, 0] = self.samples[at : at + n]
            done += n
            self._played += n

    def stop(self) -> None:
        self._stopped = True
        output, self._output = self._output, None
        if output is not None:
            output.stop()
            output.close()
            _stream_opened(-1)

    def _due(self) -> int:
        """Samples the clock says should have been handed out by now."""
        total = self.samples.size
        end = None if self.loop else total
        if not self.realtime:
            return end if end is not None else self._position + self.block_size
        if self._started_at is None or self._stopped:
            return self._position
        due = int((_time.monotonic() - self._started_at) * self.sample_rate)
        return min(due, end) if end is not None else due

    @property
    def available(self) -> int:
        return max(0, self._due() - self._position)

    @property
    def exhausted(self) -> bool:
        if self._stopped:
            return True
        return not self.loop and self._due() >= self.samples.size

    @property
    def time(self) -> float:
        return self._position / self.sample_rate

    def read(self, max_samples: int | None = None) -> FloatArray:
        n = self.available
        if max_samples is not None:
            n = min(n, max_samples)
        total = self.samples.size
        out = np.empty(n, dtype=np.float32)
        done = 0
        while done < n:
            at = self._position % total
            take = min(n - done, total - at)
            out[done : done + take] = self.samples[at : at + take]
            done += take
            self._position += take
        return out

    def _wait_hint(self) -> float:
        """Sleep until the next block is due, not a fixed slice."""
        if self._started_at is None:
            return super()._wait_hint()
        due_at = self._started_at + (self._position + self.block_size) / self.sample_rate
        return float(
            np.clip(due_at - _time.monotonic(), 0.0005, self.block_size / self.sample_rate)
        )
