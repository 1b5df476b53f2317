"""How a part adds its commands to ``qc``: the contract between the parts and the entry point (qc.cli).

Each part's ``cli`` module exposes ``register(subparsers)`` and, for benchmarks, may expose
``register_bench(bench_subparsers)``. A handler is set with ``set_defaults(func=...)``, takes
the parsed arguments and returns an exit code; a QcError it raises is printed as one line
(exit code 2). A ``cli`` module imports nothing heavy at import time, so ``qc edge ...``
never loads Flask or torch and ``qc --help`` is instant.
"""

from __future__ import annotations

import argparse


def add_group(
    sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None
) -> argparse._SubParsersAction:
    """Add a command group (``qc NAME ...``) and return its subparsers for its commands."""
    group = sub.add_parser(name, help=help, description=description or help)
    group.set_defaults(group_parser=group)
    return group.add_subparsers(dest="command", metavar="SUBCOMMAND")
