"""The `hamba` command: run, render, devices, osc-schema, check, bench.

Every expected failure (a missing file, a bad size, an unknown output, a model that cannot be
loaded, a port in use) is a :class:`~engine.errors.HambaError` that prints as one line and exits
non-zero, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
        "(default: stabilityai/sd-turbo)",
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
    run.add_argument("--duration", type=float, help="stop after SECONDS")
    run.add_argument("--loop", action="store_true", help="loop the audio file")
    run.add_argument("--audible", action="store_true", help="play the audio file out loud")
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
    schema.add_argument("--format", choices=["json", "markdown", "oscquery"], default="markdown")
    schema.add_argument("-o", "--out", type=Path, help="write to a file instead of stdout")

    check = sub.add_parser("check", help="a doctor for stage day: device, model, outputs")
    check.add_argument("--model", default="tiny", help="model to try loading (default tiny)")
    check.add_argument("--device", default="auto", help="device to check (default auto)")

    bench = sub.add_parser("bench", help="run the benchmarks and record their results")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all that run here)")
    return parser


def engine_config(args: argparse.Namespace, table: str = "run") -> tuple[Any, dict[str, Any]]:
    """The engine's PipelineConfig from --config, --preset and flags; plus the file's table of
    the command (``[run]`` or ``[render]``: one file may hold both)."""
    from engine.config import config_from_data, parse_overrides, read_toml

    data: dict[str, Any] = read_toml(args.config) if args.config is not None else {}
    tables = {name: data.pop(name, {}) for name in ("run", "render")}
    for name, value in tables.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{args.config}: [{name}] must be a table")
    command_table = tables[table]
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
        "duration": args.duration,
        "preset": args.preset,
    }
    options.update({k: v for k, v in flag_options.items() if v is not None})
    for flag in ("loop", "audible"):
        if getattr(args, flag):
            options[flag] = True
    if args.no_oscquery:
        options["oscquery_port"] = None
    run_options = _validated(RunOptions, options, "run options")
    if run_options.audio is not None and not run_options.audio.is_file():
        from engine.errors import AudioError

        raise AudioError(f"audio file not found: {run_options.audio}")
    from bridge.daemon import Daemon

    daemon = Daemon(config, run_options)
    daemon.install_signal_handlers()
    stats = daemon.run()
    print(
        f"hamba: {stats.frames} frames, {stats.dropped} dropped, {stats.held} held",
        file=sys.stderr,
    )
    return 0


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
    from osc_schema.export import export_text

    text = export_text(args.format)
    if args.out is None:
        print(text)
    else:
        try:
            args.out.write_text(text + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.out}: {exc.strerror}") from None
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bridge.doctor import run_checks

    report, ok = run_checks(model=args.model, device=args.device)
    print(report)
    return 0 if ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from bridge.bench import run_benchmarks

    return run_benchmarks(args.names)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "render": cmd_render,
    "devices": cmd_devices,
    "osc-schema": cmd_osc_schema,
    "check": cmd_check,
    "bench": cmd_bench,
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
    # transformers warns about optional image backends it never uses here
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
