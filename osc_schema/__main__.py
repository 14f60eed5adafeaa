"""``python -m osc_schema [--check] [--root DIR]``: regenerate (or check) the schema's documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from osc_schema.export import stale_docs, write_docs
from osc_schema.schema import OscSchemaError


def main(argv: list[str] | None = None) -> int:
    """Write the README table and docs/osc-schema.json; with --check, exit 1 if they drifted."""
    parser = argparse.ArgumentParser(prog="python -m osc_schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drifted documents")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    try:
        paths = stale_docs(args.root) if args.check else write_docs(args.root)
    except OscSchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "rewritten"
    for path in paths:
        print(f"{path}: {verb}")
    return 1 if args.check and paths else 0


if __name__ == "__main__":
    sys.exit(main())
