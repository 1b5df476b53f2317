"""`qc edge ...`: run the inspection runtime, check a config, inspect the outbox.

Imports nothing heavy at import time; each handler imports what it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from qcloop import wire
from qcloop.commands import add_group
from qcloop.stopping import stop_on_signals

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "edge.example.toml"


def register(sub: argparse._SubParsersAction) -> None:
    cmds = add_group(sub, "edge", help="the inspection runtime on a camera-attached edge box")

    run = cmds.add_parser(
        "run",
        help="inspect parts until stopped (Ctrl-C stops cleanly)",
        description="Run the edge: trigger -> capture -> detect -> decide -> actuate for every "
        "part; uncertain and audit frames go through the outbox to the station.",
    )
    run.add_argument("--config", type=Path, default=EXAMPLE, help=f"edge TOML config (default: {EXAMPLE.name})")
    run.add_argument("--parts", type=int, default=None, help="stop after this many parts")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the line stops (--parts, --duration), keep delivering reviews until the station "
        "has acknowledged all of them or SECONDS pass (default 0: stop at once)",
    )
    run.add_argument("--quiet", action="store_true", help="no live status line")
    run.set_defaults(func=cmd_run)

    check = cmds.add_parser("check-config", help="validate a config file and print the resolved values")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)

    rb = cmds.add_parser(
        "rollback", help="return to the previous model version (a running edge follows within a second)"
    )
    rb.add_argument("--config", type=Path, default=EXAMPLE)
    rb.set_defaults(func=cmd_rollback)

    allow = cmds.add_parser(
        "allow-model",
        help="lift a rollback: the version may be installed again when announced",
        description="A rolled-back version stays refused (its retained announcement does not bring it back "
        "after a restart) until a newer version is announced or this lifts it.",
    )
    allow.add_argument("version")
    allow.add_argument("--config", type=Path, default=EXAMPLE)
    allow.set_defaults(func=cmd_allow_model)

    ob = cmds.add_parser("outbox", help="show what waits in the outbox for the station's ack")
    ob.add_argument("--config", type=Path, default=EXAMPLE)
    ob.set_defaults(func=cmd_outbox)


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from qcloop.configfile import describe

    cfg = load_config(args.config)
    print(
        describe(
            cfg,
            {
                "model registry": cfg.registry_dir,
                "outbox": cfg.outbox_dir,
                "decision journal": cfg.journal_path if cfg.edge.journal else None,
            },
        )
    )
    print(f"{args.config}: OK")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from models.registry import Registry

    cfg = load_config(args.config)
    registry = Registry(cfg.registry_dir)
    before = registry.current_version()
    after = registry.rollback(reason="qc edge rollback")
    print(
        f"{registry.root}: model {before} -> {after}; {before} stays refused until a newer version is announced "
        f"or `qc edge allow-model {before}` lifts it"
    )
    return 0


def cmd_allow_model(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from models.registry import Registry

    registry = Registry(load_config(args.config).registry_dir)
    if not registry.allow(args.version):
        print(f"{registry.root}: {args.version} was not rolled back; nothing to lift", file=sys.stderr)
        return 1
    print(
        f"{registry.root}: {args.version} may be installed again when it is announced (a restart of the "
        f"edge takes its retained announcement)"
    )
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.outbox import Outbox

    cfg = load_config(args.config)
    box = Outbox(cfg.outbox_dir, max_bytes=cfg.outbox.max_bytes)
    print(
        f"{cfg.outbox_dir}: {box.depth()} reviews waiting, {box.bytes / 1e6:.1f} MB of {cfg.outbox.max_bytes / 1e6:.0f} MB"
    )
    box.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.service import EdgeService

    cfg = load_config(args.config)
    service = EdgeService(cfg, max_parts=args.parts)
    stop = stop_on_signals()
    service.start()
    print(
        f"edge {cfg.edge.line}/{cfg.edge.camera} running model {service.detector.version}; Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        show_status_until_stopped(service, stop, args.duration, quiet=args.quiet)
        if args.drain > 0 and not stop.is_set():
            drain_outbox(service, stop, args.drain)
    finally:
        service.stop()
        print(status_line(service.status(state="stopped")), file=sys.stderr)
    return 0


def drain_outbox(service, stop: threading.Event, seconds: float) -> bool:
    """Wait until the outbox is empty (every review acknowledged), a signal, or the time is up."""
    deadline = time.monotonic() + seconds
    while service.outbox.depth() and not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.1)
    return service.outbox.depth() == 0


class LiveStatus(logging.Filter):
    """A one-line status redrawn in place on a terminal, which log lines never end up glued onto.

    Installed as a filter on the root logger's handlers: before a record is written, the status line
    is cleared (carriage return, erase line), so the record starts at column 0 on a line of its own;
    the next ``show`` draws the status again below it.
    """

    CLEAR = "\r\x1b[K"

    def __init__(self, stream=None) -> None:  # noqa: ANN001 (a text stream; stderr by default)
        super().__init__()
        self.stream = stream or sys.stderr
        self.shown = False
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        with self._lock:
            self.stream.write(self.CLEAR + text)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        """Erase the status line, so what is written next starts on a clean line."""
        with self._lock:
            if self.shown:
                self.stream.write(self.CLEAR)
                self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        self.clear()
        return True

    def __enter__(self) -> LiveStatus:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self)
        with self._lock:
            if self.shown:
                self.stream.write("\n")
                self.shown = False


def show_status_until_stopped(service, stop: threading.Event, duration: float | None, quiet: bool = False) -> None:
    """Refresh a one-line status until stop is set, the line finishes, or duration passes."""
    t0 = time.monotonic()
    with LiveStatus() as live:
        while not stop.is_set() and not service.pipeline.finished.is_set():
            if duration is not None and time.monotonic() - t0 >= duration:
                return
            if not quiet:
                live.show(status_line(service.status()))
            stop.wait(0.5)


def status_line(s: wire.EdgeStatus) -> str:
    a = s.actions
    fs = sum(s.failsafe.values())
    alarms = ", ".join(s.alarms) or "none"
    depth = s.outbox_depth
    return (
        f"parts {s.parts:>7}  PASS {a.get('PASS', 0)}  HOLD {a.get('HOLD', 0)}  REJECT {a.get('REJECT', 0)} "
        f"(fail-safe {fs})  outbox {depth if depth is not None else '-'}  model {s.model}  alarms: {alarms}   "
    )
