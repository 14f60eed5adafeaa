"""What was read from a model's files, kept while the files stay as they were.

Start-up looks at a model more than once (its kind is picked, then it loads; ``hamba models``
picks the kind, then counts the parameters): each look asks a :class:`FileCache`, so each file is
read once. An entry is keyed on the file's resolved path, inode, modification time and size: a
rewritten or replaced file is read afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

_Key = tuple[Path, int, int, int, int]


class FileCache(Generic[T]):
    """``read(path)``, remembered for the last ``size`` files (what it raises is not kept)."""

    def __init__(self, read: Callable[[Path], T], *, size: int = 8) -> None:
        self._read = read
        self._size = size
        self._values: OrderedDict[_Key, T] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> T:
        try:
            stat = path.stat()
            key = (path.resolve(), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            return self._read(path)  # the reader says what is wrong with it, as uncached
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        # the given path, not the resolved one: what the reader raises names the file as given
        value = self._read(path)
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return value
