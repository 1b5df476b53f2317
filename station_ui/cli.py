"""`qc station ...`: run the review station, manage users and API tokens, check a config.

Imports nothing heavy at import time (no Flask); each handler imports what it runs.
"""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from qcloop.commands import add_group
from qcloop.stopping import stop_on_signals

EXAMPLE = Path(__file__).resolve().parent / "station.example.toml"


def register(sub: argparse._SubParsersAction) -> None:
    cmds = add_group(sub, "station", help="the line-side review station (web app + MQTT ingest)")

    run = cmds.add_parser("run", help="serve the review station and ingest reviews until stopped",
                          description="Start the web app on waitress and the MQTT ingest in one process; "
                                      "prints the URL to open.")
    run.add_argument("--config", type=Path, default=EXAMPLE, help=f"station TOML config (default: {EXAMPLE.name})")
    run.add_argument("--host", default=None, help="override [web].host")
    run.add_argument("--port", type=int, default=None, help="override [web].port (0: a free port)")
    run.set_defaults(func=cmd_run)

    add = cmds.add_parser("add-user", help="create a user or set a user's role and password/PIN",
                          description="Operators may use a PIN of 4+ digits; engineers and admins need a password "
                                      "of 10+ characters. Reads the secret from a prompt or from stdin.")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("operator", "engineer", "admin"))
    add.add_argument("--password-stdin", action="store_true", help="read the password/PIN from stdin (one line)")
    add.add_argument("--config", type=Path, default=EXAMPLE)
    add.set_defaults(func=cmd_add_user)

    dis = cmds.add_parser("disable-user", help="refuse a user from now on: no login, open sessions end at once")
    dis.add_argument("name")
    dis.add_argument("--config", type=Path, default=EXAMPLE)
    dis.set_defaults(func=cmd_disable_user)

    tok = cmds.add_parser("add-token", help="create an API token for the export API (printed once)")
    tok.add_argument("name", help="who uses it, e.g. trainer")
    tok.add_argument("--config", type=Path, default=EXAMPLE)
    tok.set_defaults(func=cmd_add_token)

    rev = cmds.add_parser("revoke-token", help="revoke an API token (the export API refuses it at once)")
    rev.add_argument("name", help="the name given to add-token")
    rev.add_argument("--config", type=Path, default=EXAMPLE)
    rev.set_defaults(func=cmd_revoke_token)

    crit = cmds.add_parser("set-critical", help="turn the two-person rule for a line on or off")
    crit.add_argument("line")
    crit.add_argument("--off", action="store_true")
    crit.add_argument("--config", type=Path, default=EXAMPLE)
    crit.set_defaults(func=cmd_set_critical)

    check = cmds.add_parser("check-config", help="validate a station config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)


def _store(cfg):
    """The station's store for one command, closed when the ``with`` block ends."""
    from contextlib import closing

    from station_ui.store import Store

    return closing(Store(cfg.db_path, station=cfg.station.name))


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from station_ui.config import load_config
    from station_ui.server import StationServer

    cfg = load_config(args.config)
    web = cfg.web
    if args.host is not None:
        web = replace(web, host=args.host)
    if args.port is not None:
        web = replace(web, port=args.port)
    cfg = replace(cfg, web=web)
    server = StationServer(cfg)
    stop = stop_on_signals()
    print(f"review station {cfg.station.name} at {server.url} "
          f"(MQTT {cfg.mqtt.broker_list if cfg.mqtt.enabled else 'off'}); Ctrl-C stops",
          flush=True)
    server.start(mqtt_wait_s=0)  # the web app serves at once; the ingest connects when the broker answers
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


def cmd_disable_user(args: argparse.Namespace) -> int:
    from station_ui import accounts
    from station_ui.config import load_config

    with _store(load_config(args.config)) as store:
        accounts.disable_user(store, args.name)
    print(f"user {args.name!r} disabled: no login, and open sessions end at their next request "
          f"(qc station add-user enables the user again)")
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    from station_ui import accounts
    from station_ui.config import load_config

    cfg = load_config(args.config)
    if args.password_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = getpass.getpass(f"PIN or password for {args.name}: ")
        if getpass.getpass("again: ") != secret:
            print("qc: error: the two entries differ", file=sys.stderr)
            return 2
    with _store(cfg) as store:
        accounts.add_user(store, args.name, args.role, secret, by="cli", production=cfg.station.production)
    print(f"user {args.name} ({args.role}) saved in {cfg.db_path}")
    return 0


def cmd_add_token(args: argparse.Namespace) -> int:
    from station_ui import accounts
    from station_ui.config import load_config

    cfg = load_config(args.config)
    with _store(cfg) as store:
        token = accounts.add_token(store, args.name)
    print(token)
    print(f"API token {args.name!r} created; it is shown only now (the station keeps only its hash)", file=sys.stderr)
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from station_ui import accounts
    from station_ui.config import load_config

    cfg = load_config(args.config)
    with _store(cfg) as store:
        accounts.revoke_token(store, args.name)
    print(f"API token {args.name!r} revoked")
    return 0


def cmd_set_critical(args: argparse.Namespace) -> int:
    from station_ui.config import load_config

    cfg = load_config(args.config)
    with _store(cfg) as store:
        store.set_line_critical(args.line, not args.off, "cli")
    print(f"line {args.line}: two-person rule {'off' if args.off else 'on'}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from qcloop.configfile import describe
    from station_ui.config import load_config

    cfg = load_config(args.config)
    print(describe(cfg, {"database": cfg.db_path, "images": cfg.image_dir, "session key": cfg.secret_key_path}))
    print(f"{args.config}: OK")
    return 0
