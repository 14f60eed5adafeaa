"""A private network namespace (root only): what runs inside reaches nothing but its own loopback.

Ray's servers listen on every interface and there is no option to bind them to loopback, so
the cluster tests start their Ray cluster inside a namespace of their own whose only interface
is ``lo``. :func:`private_network` moves the calling thread in (and back out at the end): the
processes it starts inherit the namespace. ``python -m tests.netns CMD ...`` runs a command
inside one. Where namespaces cannot be made (not root), the tests fall back to a cluster
addressed on 127.0.0.1 and say so.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _loopback_up() -> None:
    # the ioctl `ip link set lo up` makes, without needing iproute2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def enter_private_network() -> bool:
    """Move the calling thread into a new network namespace with loopback up; False if not allowed."""
    if _libc().unshare(CLONE_NEWNET) != 0:
        return False
    _loopback_up()
    return True


@contextmanager
def private_network() -> Iterator[bool]:
    """Inside: a namespace of its own (True), or, where that is not allowed, the host's (False)."""
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        if not enter_private_network():
            yield False
            return
        try:
            yield True
        finally:
            if _libc().setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the host's network namespace")
    finally:
        os.close(original)


def interfaces() -> list[str]:
    """The network interfaces the calling thread sees."""
    return [name for _, name in socket.if_nameindex()]


if __name__ == "__main__":
    if not enter_private_network():
        sys.exit("tests.netns: cannot make a network namespace here (needs root)")
    os.execvp(sys.argv[1], sys.argv[1:])
