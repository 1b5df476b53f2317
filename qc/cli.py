"""The `qc` command: one subcommand group per part, each registered by the part itself.

Each part exposes ``register(subparsers)`` in its ``cli`` module (the contract is
qcloop.commands); that module imports nothing heavy at import time, so ``qc edge ...``
never loads Flask or torch, and ``qc --help`` is instant. Errors raised on purpose
(QcError) are printed as one line, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from qcloop import __version__
from qcloop.errors import QcError

#: (module with register(), why it exists) - order is the order in --help.
PARTS = (
    "edge.cli",
    "station_ui.cli",
    "training.cli",
    "qc.demo_cli",
    "qc.broker_cli",
    "qc.bench_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qc",
        description="qcloop line-side QC inspection: edge runtime, review station, retraining, demo, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"qcloop {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # part not written yet; the others still work
                continue
            raise
        module.register(sub)
    parser.epilog = "every command:\n" + "\n".join(_every_command(sub))
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _every_command(sub: argparse._SubParsersAction) -> list[str]:
    """``qc GROUP COMMAND  help`` for every registered command, read from the parsers themselves."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    lines = []
    for group, gp in sub.choices.items():
        inner = [a for a in gp._actions if isinstance(a, argparse._SubParsersAction)]
        if not inner:
            lines.append(f"  qc {group:<28} {helps.get(group, '')}")
            continue
        cmd_help = {a.dest: a.help or "" for a in inner[0]._choices_actions}
        lines += [f"  qc {group + ' ' + name:<28} {cmd_help.get(name, '')}" for name in inner[0].choices]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "func", None)
    if handler is None:
        # A group without a subcommand: show that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except QcError as exc:
        print(f"qc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
