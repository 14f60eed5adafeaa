"""Options of `hamba run` beyond the engine's configuration (flags, or a config's [run] table).

Kept free of heavy imports so the CLI validates them before torch loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.midi.mapping import MidiMap
from bridge.osc.access import parse_networks
from engine.errors import ConfigError
from osc_schema.controls import BeatSourceChoice


def parse_host_port(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for localhost) as a tuple; ConfigError names the spec."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"feedback target {spec!r} must look like HOST:PORT (port 1-65535)")
    return (host or "127.0.0.1", int(port))


class RunOptions(BaseModel):
    """What `hamba run` does beyond the engine's configuration."""

    model_config = ConfigDict(extra="forbid")

    audio: Path | None = Field(None, description="audio file to play and react to")
    live: bool = Field(False, description="react to a live input instead of a file")
    live_device: str | int | None = Field(None, description="live input device (name or index)")
    outputs: list[str] = Field(default_factory=lambda: ["auto"], description="output specs")
    name: str = Field("hambaMetal", min_length=1, description="Syphon/Spout/NDI/shm name")
    osc_host: str = Field("0.0.0.0", description="address the OSC server listens on")
    osc_port: int = Field(9000, ge=0, le=65535, description="OSC UDP (and TCP) port")
    oscquery_port: int | None = Field(9001, ge=0, le=65535, description="OSCQuery HTTP port")
    feedback: list[str] = Field(default_factory=list, description="HOST:PORT feedback targets")
    feedback_rate: float = Field(
        120.0,
        gt=0,
        le=1000,
        description="feedback frames a second at most (a frame with a beat is always sent)",
    )
    osc_allow: list[str] = Field(
        default_factory=list, description="networks OSC is accepted from (CIDR; empty: any host)"
    )
    control_token: str | None = Field(
        None, min_length=1, description="token the control page and its WebSocket ask for"
    )
    duration: float | None = Field(None, gt=0, description="stop after this many seconds")
    loop: bool = Field(False, description="loop the audio file")
    audible: bool = Field(False, description="play the file through the speakers")
    preset: str | None = Field(None, description="initial preset")
    status_interval: float = Field(0.5, gt=0, description="seconds between status lines")
    link: Literal["off", "follow", "lead", "auto"] = Field(
        "off", description="Ableton Link: follow the session, lead it, or auto (see README)"
    )
    quantum: float = Field(4.0, gt=0, le=64, description="beats per bar (Link quantum, MIDI bars)")
    beat_source: BeatSourceChoice = Field(
        "auto", description="what drives the beat: auto, audio, link or midi"
    )
    midi_map: Path | None = Field(None, description="a MIDI mapping file (a [midi] table)")
    midi: MidiMap | None = Field(None, description="the MIDI mapping ([midi] or --midi-map)")
    pipelined: bool = Field(
        True,
        description="plan and launch the next frame while this one renders (False: one "
        "frame after the other, the sequential loop)",
    )

    @field_validator("feedback")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_host_port(spec)
        return value

    @field_validator("osc_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value


class RenderOptions(BaseModel):
    """What `hamba render` does beyond the engine's configuration (flags, or a [render] table)."""

    model_config = ConfigDict(extra="forbid")

    cluster: str | None = Field(
        None, description="render on a Ray cluster: local, auto or ray://HOST:PORT"
    )
    workers: int | None = Field(
        None, ge=1, description="at most this many workers (default: one per GPU or CPU slot)"
    )
    chunk_seconds: float = Field(
        10.0, gt=0, description="long songs render in parallel chunks of about this many seconds"
    )
    warmup_frames: int | None = Field(
        None,
        ge=0,
        description="frames each chunk renders and drops first (default: from the stream settings)",
    )

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        from bridge.cluster.session import check_cluster_spec

        return None if value is None else check_cluster_spec(value)
