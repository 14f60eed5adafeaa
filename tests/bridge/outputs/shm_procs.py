"""Writer and reader processes for the shared-memory tests.

Run as ``python -m tests.bridge.outputs.shm_procs ROLE ...`` so that each side is a separate
process with its own resource tracker, exactly like a VJ tool reading the engine's frames.
Each role prints ``ready`` once it is under way and one JSON line with its results at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from bridge.outputs.shm import ShmFrameReader, ShmOutput
from tests.bridge.outputs.patterns import pattern_frame, stamped_frame


def _say(message: object) -> None:
    print(message if isinstance(message, str) else json.dumps(message), flush=True)


def write_pattern(name: str, width: int, height: int, seconds: float, interval: float) -> None:
    """Publish ``pattern_frame(i)`` every ``interval`` s (forever when ``seconds`` <= 0)."""
    with ShmOutput(name) as out:
        out.open(width, height, 30.0)
        index, end = 0, time.monotonic() + seconds
        while seconds <= 0 or time.monotonic() < end:
            out.publish(pattern_frame(index, width, height), index, index / 30.0)
            if index == 0:
                _say("ready")
            index += 1
            time.sleep(interval)
    _say({"published": index})


def write_stress(name: str, width: int, height: int, seconds: float) -> None:
    """Publish crc-stamped frames as fast as possible for ``seconds``."""
    rng = np.random.default_rng(7)
    bodies = [rng.integers(0, 256, (height, width, 4), dtype=np.uint8) for _ in range(8)]
    with ShmOutput(name) as out:
        out.open(width, height, 1000.0)
        _say("ready")
        index, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            out.publish(stamped_frame(index, bodies[index % 8]), index, index / 1000.0)
            index += 1
    _say({"published": index})


def read(name: str, count: int, timeout: float) -> None:
    """Read ``count`` new frames (or until ``timeout``), report their indices, then exit."""
    indices: list[int] = []
    with ShmFrameReader(name) as reader:
        end = time.monotonic() + timeout
        while len(indices) < count and time.monotonic() < end:
            frame = reader.read(new_only=True)
            if frame is None:
                time.sleep(0.002)
                continue
            if not indices:
                _say("ready")
            indices.append(frame.index)
    _say({"indices": indices})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["write-pattern", "write-stress", "read"])
    parser.add_argument("name")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args(argv)
    if args.role == "write-pattern":
        write_pattern(args.name, args.width, args.height, args.seconds, args.interval)
    elif args.role == "write-stress":
        write_stress(args.name, args.width, args.height, args.seconds)
    else:
        read(args.name, args.count, args.seconds or 10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
