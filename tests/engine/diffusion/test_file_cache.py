"""What is read from a model's files is read once while the file is unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.diffusion.file_cache import FileCache


def counting_cache() -> tuple[FileCache[str], list[Path]]:
    reads: list[Path] = []

    def read(path: Path) -> str:
        reads.append(path)
        return path.read_text()

    return FileCache(read, size=2), reads


def test_an_unchanged_file_is_read_once_and_a_rewritten_one_again(tmp_path: Path) -> None:
    cache, reads = counting_cache()
    file = tmp_path / "model_index.json"
    file.write_text("one")
    link = tmp_path / "link.json"
    link.symlink_to(file)
    assert cache(file) == cache(link) == "one"  # one file, by either name
    assert len(reads) == 1
    file.write_text("three")
    assert cache(file) == "three"
    assert len(reads) == 2


def test_a_copy_is_its_own_file_and_the_oldest_entry_goes(tmp_path: Path) -> None:
    cache, reads = counting_cache()
    first = tmp_path / "a.json"
    first.write_text("a")
    copy = tmp_path / "b.json"
    shutil.copy2(first, copy)  # same size and time: the path tells them apart
    third = tmp_path / "c.json"
    third.write_text("c")
    assert [cache(first), cache(copy), cache(third)] == ["a", "a", "c"]
    assert len(reads) == 3
    cache(first)  # the oldest of three in a cache of two: read again
    assert len(reads) == 4


def test_what_the_reader_raises_is_not_kept(tmp_path: Path) -> None:
    cache, reads = counting_cache()
    missing = tmp_path / "missing.json"
    for _ in range(2):
        with pytest.raises(FileNotFoundError, match=r"missing\.json"):
            cache(missing)
    assert len(reads) == 2
