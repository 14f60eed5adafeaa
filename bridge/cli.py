"""The `hamba` command: run, render, devices, osc-schema, models, check, bench, midi.

Every expected failure (a missing file, a bad size, an unknown output, a model that cannot be
loaded, a port in use) is a :class:`~engine.errors.HambaError` that prints as one line and exits
non-zero, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import ConfigError, HambaError

log = logging.getLogger("hamba")

EXIT_ERROR = 2

# flags shared by run and render, mapped onto dotted config keys
_ENGINE_FLAGS: dict[str, str] = {
    "model": "diffusion.model",
    "device": "diffusion.device",
    "width": "inference.width",
    "height": "inference.height",
    "steps": "inference.num_inference_steps",
    "batch_size": "inference.batch_size",
    "fps": "audio.fps",
    "seed": "latent.seed",
    "prompt": "prompt.base_prompt",
}


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--config", type=Path, help="TOML configuration file (flags win over it)")
    group.add_argument(
        "--preset", choices=["fast", "balanced", "quality"], help="speed/quality preset"
    )
    group.add_argument(
        "--model",
        help='"tiny" (built-in, untrained), a local folder, a .safetensors file or a hub id '
        '(default: stabilityai/sd-turbo); measuring tools that draw no pictures: "null" (a '
        'render that costs nothing) and "null-fixed" (a render of diffusion.null_render_ms, '
        "default 3 ms, off the Python thread, like a GPU)",
    )
    group.add_argument("--device", help="auto, cuda, cuda:N, mps or cpu")
    group.add_argument("--width", type=int, help="frame width (multiple of 8)")
    group.add_argument("--height", type=int, help="frame height (multiple of 8)")
    group.add_argument("--steps", type=int, help="denoising steps per frame")
    group.add_argument("--batch-size", type=int, help="frames per batch (offline)")
    group.add_argument("--fps", type=float, help="frames per second")
    group.add_argument("--seed", type=int, help="seed of the latent walk")
    group.add_argument("--prompt", help="the base prompt")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="any configuration field (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `hamba` command."""
    parser = argparse.ArgumentParser(
        prog="hamba", description="hambaMetal: music-reactive diffusion visuals for VJs."
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the headless daemon: live visuals to Syphon/Spout/NDI/shm")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--audio", type=Path, help="audio file to react to")
    source.add_argument(
        "--live",
        nargs="?",
        const="",
        default=None,
        metavar="DEVICE",
        help="live input (name or index)",
    )
    run.add_argument(
        "--output",
        dest="outputs",
        action="append",
        metavar="SPEC",
        help="auto, syphon, spout, ndi, shm, file:PATH.mp4, png:DIR (repeatable; default auto)",
    )
    run.add_argument("--name", help="Syphon/Spout/NDI/shm name (default hambaMetal)")
    run.add_argument("--osc-host", help="address OSC listens on (default 0.0.0.0)")
    run.add_argument("--osc-port", type=int, help="OSC port (default 9000)")
    run.add_argument("--oscquery-port", type=int, help="OSCQuery HTTP port (default 9001)")
    run.add_argument("--no-oscquery", action="store_true", help="do not serve OSCQuery")
    run.add_argument("--feedback", action="append", metavar="HOST:PORT", help="send analysis here")
    run.add_argument(
        "--osc-allow",
        action="append",
        metavar="CIDR",
        help="accept OSC only from these hosts/networks, e.g. 192.168.1.0/24 (repeatable)",
    )
    run.add_argument(
        "--control-token",
        metavar="TOKEN",
        help="the control page (/ui/) and its WebSocket ask for this token",
    )
    run.add_argument("--duration", type=float, help="stop after SECONDS")
    run.add_argument("--loop", action="store_true", help="loop the audio file")
    run.add_argument("--audible", action="store_true", help="play the audio file out loud")
    run.add_argument(
        "--sequential",
        action="store_true",
        help="render one frame after the other (default: plan the next frame while one renders)",
    )
    sync = run.add_argument_group("sync")
    sync.add_argument(
        "--link",
        choices=["off", "follow", "lead", "auto"],
        help="Ableton Link: follow the session's beat, lead it with the music's, or auto",
    )
    sync.add_argument("--quantum", type=float, help="beats per bar for Link and MIDI clock (4)")
    sync.add_argument(
        "--beat-source",
        choices=["auto", "audio", "link", "midi"],
        help="what drives the picture's beat (default auto: Link when followed, then MIDI clock"
        " with [midi] clock, then audio)",
    )
    sync.add_argument("--midi-map", type=Path, metavar="FILE", help="MIDI mapping ([midi] TOML)")
    _add_engine_flags(run)

    render = sub.add_parser("render", help="offline render of songs to mp4 with their audio")
    render.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files")
    render.add_argument(
        "-o", "--out", type=Path, required=True, help="an .mp4 for one song, a folder for several"
    )
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.add_argument(
        "--cluster",
        metavar="SPEC",
        help="render on a Ray cluster: local (this machine), auto (the cluster this machine "
        "joined) or ray://HOST:PORT (needs hambametal[cluster])",
    )
    render.add_argument(
        "--workers", type=int, help="at most this many cluster workers (default: one per GPU)"
    )
    render.add_argument(
        "--chunk-seconds",
        type=float,
        help="with --cluster, long songs render in parallel chunks of about this many seconds "
        "(default 10)",
    )
    _add_engine_flags(render)

    sub.add_parser("devices", help="audio inputs and the outputs that work on this machine")

    schema = sub.add_parser("osc-schema", help="export the OSC address space")
    schema.add_argument(
        "--format",
        choices=["json", "markdown", "oscquery", "open-stage-control", "touchosc"],
        default="markdown",
        help="the address space, or a controller layout made from it (touchosc needs -o)",
    )
    schema.add_argument("-o", "--out", type=Path, help="write to a file instead of stdout")

    models = sub.add_parser(
        "models", help="models in the hub cache and the given paths: kind, size, fit here"
    )
    models.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="model folders, files or folders of them",
    )
    models.add_argument("--config", type=Path, help="also list this configuration's model")
    models.add_argument("--device", default="auto", help="device to size against (default auto)")

    check = sub.add_parser("check", help="a doctor for stage day: device, model, outputs")
    check.add_argument(
        "--model", default="tiny", help="model to load and render one frame with (default tiny)"
    )
    check.add_argument("--device", default="auto", help="device to check (default auto)")

    bench = sub.add_parser("bench", help="run the benchmarks and record their results")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all that run here)")

    midi = sub.add_parser("midi", help="MIDI tools for a running daemon")
    midi_sub = midi.add_subparsers(dest="midi_command", required=True, metavar="TOOL")
    learn = midi_sub.add_parser(
        "learn", help="bind the next CC moved on the daemon's MIDI input to a control"
    )
    learn.add_argument("control", help="the control: its OSC address or name (e.g. blend)")
    learn.add_argument(
        "--osc", default="127.0.0.1:9000", metavar="HOST:PORT", help="the daemon's OSC port"
    )
    learn.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    return parser


def split_config(path: Path | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]], Any]:
    """A config file's engine part, its ``[run]`` and ``[render]`` tables and its ``[midi]``
    table (None when absent): the engine's PipelineConfig reads only the first, so every
    command that reads a config file strips the rest the same way."""
    from engine.config import read_toml

    data: dict[str, Any] = read_toml(path) if path is not None else {}
    tables = {name: data.pop(name, {}) for name in ("run", "render")}
    for name, value in tables.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    return data, tables, data.pop("midi", None)


def engine_config(args: argparse.Namespace, table: str = "run") -> tuple[Any, dict[str, Any]]:
    """The engine's PipelineConfig from --config, --preset and flags; plus the file's table of
    the command (``[run]`` or ``[render]``: one file may hold both)."""
    from engine.config import config_from_data, parse_overrides

    data, tables, midi_table = split_config(args.config)
    command_table = tables[table]
    if midi_table is not None and table == "run":
        # [midi] belongs to `hamba run`; its own source name keeps errors pointing at the file
        command_table = {**command_table, "midi": (str(args.config), midi_table)}
    overrides: dict[str, Any] = {}
    for flag, key in _ENGINE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    overrides.update(parse_overrides(args.overrides))
    source = str(args.config) if args.config is not None else "command line"
    config = config_from_data(data, source=source, preset=args.preset, overrides=overrides)
    return config, command_table


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.options import RunOptions

    config, run_table = engine_config(args)
    options: dict[str, Any] = dict(run_table)
    if args.audio is not None:
        options["audio"] = args.audio
        options.pop("live", None)
    if args.live is not None:
        options["live"] = True
        options["live_device"] = _device_arg(args.live)
        options.pop("audio", None)
    flag_options = {
        "outputs": args.outputs,
        "name": args.name,
        "osc_host": args.osc_host,
        "osc_port": args.osc_port,
        "oscquery_port": args.oscquery_port,
        "feedback": args.feedback,
        "osc_allow": args.osc_allow,
        "control_token": args.control_token,
        "duration": args.duration,
        "preset": args.preset,
        "link": args.link,
        "quantum": args.quantum,
        "beat_source": args.beat_source,
        "midi_map": args.midi_map,
    }
    options.update({k: v for k, v in flag_options.items() if v is not None})
    options["midi"] = _midi_map(options)
    for flag in ("loop", "audible"):
        if getattr(args, flag):
            options[flag] = True
    if args.no_oscquery:
        options["oscquery_port"] = None
    if args.sequential:
        options["pipelined"] = False
    run_options = _validated(RunOptions, options, "run options")
    if run_options.audio is not None and not run_options.audio.is_file():
        from engine.errors import AudioError

        raise AudioError(f"audio file not found: {run_options.audio}")
    _preflight_sync(run_options)
    from bridge.daemon import Daemon

    daemon = Daemon(config, run_options)
    daemon.install_signal_handlers()
    stats = daemon.run()
    print(
        f"hamba: {stats.frames} frames, {stats.dropped} dropped, {stats.held} held",
        file=sys.stderr,
    )
    return 0


def _preflight_sync(options: Any) -> None:
    """Link's binding and the MIDI ports, checked before anything heavy loads."""
    if options.link != "off":
        from bridge.link.session import load_link

        load_link()
    if options.midi is not None:
        from bridge.midi.ports import require_port

        for kind, wanted in (("input", options.midi.input), ("output", options.midi.output)):
            if wanted is not None:
                require_port(wanted, kind)


def _midi_map(options: dict[str, Any]) -> Any:
    """The MIDI mapping: --midi-map / [run] midi_map (a file) wins over the config's [midi]."""
    from bridge.midi.mapping import load_midi_map, midi_map_from_data

    path = options.get("midi_map")
    if path is not None:
        return load_midi_map(Path(path))
    table = options.get("midi")
    if table is None:
        return None
    source, data = table if isinstance(table, tuple) else ("[run] midi", table)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [midi] must be a table")
    return midi_map_from_data(data, source=source)


def cmd_render(args: argparse.Namespace) -> int:
    from bridge.options import RenderOptions

    config, render_table = engine_config(args, "render")
    options: dict[str, Any] = dict(render_table)
    flag_options = {
        "cluster": args.cluster,
        "workers": args.workers,
        "chunk_seconds": args.chunk_seconds,
    }
    options.update({k: v for k, v in flag_options.items() if v is not None})
    render_options = _validated(RenderOptions, options, "render options")
    if render_options.cluster is None:
        from bridge.offline import render_songs

        if args.workers is not None or args.chunk_seconds is not None:
            log.warning("--workers and --chunk-seconds apply to --cluster renders only")

        outputs = render_songs(config, args.files, args.out, progress=not args.no_progress)
    else:
        # ray is imported only here, when a cluster is asked for
        from bridge.cluster.render import render_songs_on_cluster

        outputs = render_songs_on_cluster(
            config, args.files, args.out, render_options, progress=not args.no_progress
        )
    for path in outputs:
        print(path)
    return 0


def cmd_devices(_args: argparse.Namespace) -> int:
    from bridge.doctor import describe_devices

    print(describe_devices())
    return 0


def cmd_osc_schema(args: argparse.Namespace) -> int:
    from osc_schema.export import export_bytes, export_text
    from osc_schema.schema import OscSchemaError

    try:
        if args.out is None:
            print(export_text(args.format))
            return 0
        data = export_bytes(args.format)
    except OscSchemaError as exc:
        raise ConfigError(f"osc-schema: {exc}") from None
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror}") from None
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from bridge.doctor import describe_models

    paths: list[str | Path] = list(args.paths)
    if args.config is not None:
        from engine.config import config_from_data

        data = split_config(args.config)[0]
        model = config_from_data(data, source=str(args.config)).diffusion.model
        if Path(model).expanduser().exists():
            paths.append(Path(model))
    print(describe_models(paths, device=args.device))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bridge.doctor import run_checks

    report, ok = run_checks(model=args.model, device=args.device)
    print(report)
    return 0 if ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from bridge.bench import run_benchmarks

    return run_benchmarks(args.names)


def cmd_midi(args: argparse.Namespace) -> int:
    from bridge.midi.learn import learn_over_osc

    print(learn_over_osc(args.control, args.osc, timeout=args.timeout))
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "render": cmd_render,
    "devices": cmd_devices,
    "osc-schema": cmd_osc_schema,
    "models": cmd_models,
    "check": cmd_check,
    "bench": cmd_bench,
    "midi": cmd_midi,
}


def _device_arg(value: str) -> str | int | None:
    if value == "":
        return None
    return int(value) if value.isdigit() else value


def _validated(model: Any, data: dict[str, Any], what: str) -> Any:
    from pydantic import ValidationError

    from engine.config import format_validation_error

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{what}: {format_validation_error(exc)}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hamba` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # openmp workers that spin while idle starve the audio, osc and output threads (before torch
    # loads); benchmarks measure the model alone and keep the default
    if args.command != "bench":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="hamba %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _COMMANDS[args.command](args)
    except HambaError as exc:
        if args.debug:
            raise
        print(f"hamba: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"hamba: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR


def console() -> NoReturn:
    """The `hamba` console script: :func:`main`, then exit without a last garbage collection.

    By then every output, socket and shared-memory segment is closed. Left to itself the
    interpreter's final collection walks the whole model's object graph (torch, diffusers,
    transformers): one to two seconds of a SIGTERM's exit, measured here. Frozen objects are
    skipped by it; atexit handlers and log flushing still run.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
