"""Building outputs by spec; platform gating and missing libraries named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

import bridge.outputs.base as base
from bridge.outputs import (
    PublisherBase,
    available_outputs,
    create_output,
    register_output,
    resolve_auto,
)
from bridge.outputs.images import PngSequenceOutput
from bridge.outputs.ndi import NdiOutput
from bridge.outputs.publisher import RGBAImage, import_native
from bridge.outputs.video import VideoFileOutput
from engine.errors import OutputError


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish with it."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


class Null(PublisherBase):
    def __init__(self, target: str | None) -> None:
        super().__init__(f"null:{target}")

    def _open(self, width: int, height: int, fps: float) -> None:
        return None

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        return None

    def _close(self) -> None:
        return None


def test_available_outputs_on_linux() -> None:
    rows = {row.kind: row for row in available_outputs()}
    assert set(rows) == {"syphon", "spout", "ndi", "shm", "file", "png"}
    assert not rows["syphon"].available
    assert "needs macOS (this is Linux)" in rows["syphon"].reason
    assert not rows["spout"].available
    assert "needs Windows (this is Linux)" in rows["spout"].reason
    for kind in ("ndi", "shm", "file", "png"):
        assert rows[kind].available, rows[kind]
    assert "NDI" in rows["ndi"].reason
    assert "libx264" in rows["file"].reason


@pytest.mark.parametrize(("spec", "platform"), [("syphon", "macOS"), ("spout", "Windows")])
def test_platform_bound_output_names_platform_and_alternatives(spec: str, platform: str) -> None:
    with pytest.raises(OutputError) as err:
        create_output(spec)
    message = str(err.value)
    assert f"'{spec}'" in message
    assert f"needs {platform}" in message
    assert "Linux" in message
    assert "outputs that work here: ndi, shm, file:PATH.mp4, png:DIR" in message


def test_unknown_spec_names_spec_platform_and_alternatives() -> None:
    with pytest.raises(
        OutputError, match=r"unknown output 'vga' on Linux; outputs that work here: ndi, shm"
    ):
        create_output("vga")
    with pytest.raises(OutputError, match="empty output spec"):
        create_output("  ")


def test_spec_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"needs a target: write 'file:PATH\.mp4'"):
        create_output("file")
    with pytest.raises(OutputError, match="needs a target: write 'png:DIR'"):
        create_output("png:")
    with pytest.raises(OutputError, match="'shm' takes no argument"):
        create_output("shm:other")
    with pytest.raises(OutputError, match=r"does not take the options \['colour'\]"):
        create_output("ndi", colour="red")
    with pytest.raises(OutputError, match=r"file:.*out\.avi.*must end in one of \.mp4"):
        create_output(f"file:{tmp_path / 'out.avi'}")


def test_unwritable_paths_are_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=rf"cannot create the folder '{blocker}'"):
        create_output(f"file:{blocker / 'out.mp4'}")
    with pytest.raises(OutputError, match=rf"cannot create the folder '{blocker / 'frames'}'"):
        create_output(f"png:{blocker / 'frames'}")


def test_specs_build_their_outputs(tmp_path: Path) -> None:
    assert isinstance(create_output("NDI", name="stage"), NdiOutput)
    video = create_output(f" file:{tmp_path / 'new' / 'out.mp4'} ", audio_path=None)
    assert isinstance(video, VideoFileOutput)
    assert (tmp_path / "new").is_dir()
    assert isinstance(create_output(f"png:{tmp_path / 'frames'}"), PngSequenceOutput)


def test_auto_picks_the_platform_output(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_auto("darwin") == "syphon"
    assert resolve_auto("win32") == "spout"
    assert resolve_auto("linux") == "ndi"
    out = create_output("auto", name="auto-test")
    assert isinstance(out, NdiOutput)
    assert out.name == "ndi:auto-test"


def test_registered_kind_is_built_with_its_target(registry: None) -> None:
    register_output("null", lambda target, **_: Null(target), description="nothing", target="X")
    out = create_output("null:here")
    assert isinstance(out, Null)
    assert out.name == "null:here"
    assert ("null", True, "nothing") in available_outputs()
    with pytest.raises(OutputError, match="cannot register"):
        register_output("auto", lambda target, **_: Null(target))


def test_missing_native_library_is_named_with_alternatives(registry: None) -> None:
    def probe() -> str:
        import_native("hamba_no_such_module", output="ghost", install="pip install ghost")
        return "never"

    register_output("ghost", lambda target, **_: Null(target), probe=probe)
    row = next(r for r in available_outputs() if r.kind == "ghost")
    assert not row.available
    assert "hamba_no_such_module" in row.reason
    with pytest.raises(OutputError) as err:
        create_output("ghost")
    message = str(err.value)
    assert "'ghost'" in message
    assert "'hamba_no_such_module'" in message
    assert "pip install ghost" in message
    assert "on linux" in message
    assert "outputs that work here: ndi, shm" in message


def test_missing_library_raised_while_building_is_named(registry: None) -> None:
    def build(target: str | None, **_: object) -> Null:
        import_native("hamba_no_such_module", output="late", install="pip install late")
        return Null(target)

    register_output("late", build)
    with pytest.raises(OutputError, match=r"output 'late':.*hamba_no_such_module.*work here: ndi"):
        create_output("late")
