"""Broker access control for production: the Mosquitto ACL per camera, and broker passwords.

The shipped ``config/mosquitto/acl`` gives each edge box its own user,
``edge-<line>-<camera>``, in an explicit ``user`` block. Mosquitto's ``pattern``
rules cannot do this: ``%u`` must fill a whole topic level, so a user name cannot
name both the line and the camera levels of ``qc/v1/<line>/<camera>/...``. The
blocks are therefore generated here from the plant's list of cameras
(``qc broker acl --camera line1/cam1 ...``), and the shipped file is exactly what
this module renders for the example cameras (a test holds the two together).

Who may do what (everything else is denied; ``$SYS`` too):

    edge-L-C  write  P/L/C/status, P/L/C/result, P/L/C/review
              read   P/L/review-ack, P/L/verdict, P/model/L
    station   read   P/+/+/review, P/+/+/status, P/+/+/result, P/+/verdict, P/train/status
              write  P/+/review-ack, P/+/verdict, P/train/request
    trainer   read   P/+/verdict, P/train/request
              write  P/model/+, P/train/status

The station's and the trainer's one-level wildcards would also match
``P/model/verdict`` and ``P/model/review-ack``; explicit ``deny`` lines close that
overlap, and the line names ``model`` and ``train`` are refused here.

Passwords go into Mosquitto's password file through ``mosquitto_passwd``, fed on
stdin so that a password never appears in a process listing.
"""
from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qcloop import wire
from qcloop.errors import QcError, WireError

STATION_USER = "station"
TRAINER_USER = "trainer"
#: Line names that would collide with the prefix's fixed second levels (model/<line>, train/..., bridge/<line>/state).
RESERVED_LINES = wire.RESERVED_LINES
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "config" / "mosquitto"
#: The cameras the shipped example ACL is rendered for.
EXAMPLE_CAMERAS = (("line1", "cam1"), ("line1", "cam2"), ("line2", "cam1"))


class BrokerAdminError(QcError):
    """A camera list, an ACL or a password file could not be made."""


@dataclass(frozen=True)
class Camera:
    """One edge box: its line and camera name, and the broker user it connects as."""

    line: str
    camera: str

    def __post_init__(self) -> None:
        for what, name, check in (("line", self.line, wire.check_line_name), ("camera", self.camera, wire._level)):
            try:
                check(name)
            except WireError as exc:
                raise BrokerAdminError(f"{what} name {name!r}: {exc}") from exc

    @property
    def user(self) -> str:
        return edge_user(self.line, self.camera)

    @classmethod
    def parse(cls, text: str) -> Camera:
        """``LINE/CAMERA`` -> Camera."""
        line, sep, camera = text.partition("/")
        if not sep:
            raise BrokerAdminError(f"camera {text!r} must be written LINE/CAMERA, e.g. line1/cam1")
        return cls(line, camera)


def edge_user(line: str, camera: str) -> str:
    """The broker user name of the edge box for one camera (set it as the edge's [mqtt].username)."""
    return f"edge-{line}-{camera}"


def render_acl(cameras: list[Camera] | tuple[Camera, ...], prefix: str = wire.DEFAULT_PREFIX,
               stations: Mapping[str, Sequence[str]] | None = None) -> str:
    """The Mosquitto ACL file text for these cameras, the station(s) and the trainer.

    Without ``stations``, one ``station`` user serves every line. With ``stations`` (broker user ->
    the lines it serves; the station's ``[station] lines`` and ``[mqtt] username``), each station user
    gets its own block instead, naming its lines and no wildcard line level:

        S   read   P/L/+/review, P/L/+/status, P/L/+/result, P/L/verdict (each line L of S), P/train/status
            write  P/L/review-ack, P/L/verdict, P/L/settings (each L of S), P/train/request

    Every line with a camera must be served by exactly one station, or its reviews would never be
    acknowledged (or would be acknowledged by a station that did not store them).
    """
    if not cameras:
        raise BrokerAdminError("an ACL needs at least one camera (LINE/CAMERA)")
    users = [c.user for c in cameras]
    clash = sorted({u for u in users if users.count(u) > 1})
    if clash:
        raise BrokerAdminError(f"these cameras share a broker user name: {', '.join(clash)} "
                               "(line and camera names must not make the same edge-LINE-CAMERA)")
    if any(u in (STATION_USER, TRAINER_USER) for u in users):
        raise BrokerAdminError("an edge user name collides with 'station' or 'trainer'")
    t = wire.Topics(prefix)
    p = prefix
    out = [
        "# Mosquitto ACL for qcloop (made by `qc broker acl`; edit the camera list, not this file).",
        "# No topic lines before the first `user`: clients without a user get nothing,",
        "# and anonymous clients are refused by production.conf anyway.",
        "",
    ]
    if stations is None:
        out += [
            "# The review station: stores reviews, acknowledges them, publishes verdicts and retrain requests.",
            f"user {STATION_USER}",
            f"topic deny {p}/model/#",  # P/+/verdict and P/+/review-ack must not reach the model topics
            f"topic read {t.all_reviews()}",
            f"topic read {p}/+/+/status",
            f"topic read {p}/+/+/result",
            f"topic read {t.all_verdicts()}",
            f"topic read {t.all_train_status()}",
            f"topic write {p}/+/review-ack",
            f"topic write {t.all_verdicts()}",
            f"topic write {p}/+/settings",
            f"topic write {t.retrain_request()}",
            "",
        ]
    else:
        if not stations:
            raise BrokerAdminError("--station: give at least one station (NAME=LINE[,LINE...])")
        served: dict[str, str] = {}  # line -> the station user serving it
        for user, lines in stations.items():
            if not user or any(c in user for c in ":+#/") or any(c.isspace() for c in user):
                raise BrokerAdminError(f"station user name {user!r} must be non-empty without ':', '+', '#', "
                                       "'/' or spaces")
            if user == TRAINER_USER or user in users:
                raise BrokerAdminError(f"station user {user!r} collides with the "
                                       f"{'trainer' if user == TRAINER_USER else 'edge box'} user of that name")
            if not lines:
                raise BrokerAdminError(f"station {user!r} serves no line (write NAME=LINE[,LINE...])")
            for line in lines:
                try:
                    wire.check_line_name(line)
                except WireError as exc:
                    raise BrokerAdminError(f"station {user!r}: line name {line!r}: {exc}") from exc
                if served.get(line) == user:
                    raise BrokerAdminError(f"station {user!r} lists line {line!r} twice")
                if line in served:
                    raise BrokerAdminError(f"line {line!r} is served by two stations ({served[line]!r} and "
                                           f"{user!r}); each line has exactly one station")
                served[line] = user
        unserved = sorted({c.line for c in cameras} - set(served))
        if unserved:
            raise BrokerAdminError(f"no --station serves line(s) {', '.join(unserved)}, which have cameras: "
                                   "their reviews would never be acknowledged")
        for user, lines in stations.items():
            out += [f"# Review station {user}: reviews, acknowledgements, verdicts and settings of "
                    f"{', '.join(lines)} only; retrain requests.", f"user {user}"]
            out += [f"topic read {topic}" for line in lines
                    for topic in (t.all_reviews(line), f"{p}/{line}/+/status", f"{p}/{line}/+/result",
                                  t.verdict(line))]
            out.append(f"topic read {t.all_train_status()}")
            out += [f"topic write {topic}" for line in lines
                    for topic in (t.review_ack(line), t.verdict(line), t.settings(line))]
            out += [f"topic write {t.retrain_request()}", ""]
    out += [
        "# The retraining server: learns from verdicts, announces models, reports its status.",
        f"user {TRAINER_USER}",
        f"topic deny {p}/model/verdict",  # P/model/+ must not stand for the verdicts of a line named 'model'
        f"topic deny {p}/model/review-ack",
        f"topic read {t.all_verdicts()}",
        f"topic read {t.retrain_request()}",
        f"topic write {p}/model/+",
        f"topic write {t.all_train_status()}",
    ]
    for cam in cameras:
        out += [
            "",
            f"# The edge box of {cam.line}/{cam.camera}: only its own camera's topics; acks, verdicts, models of its line.",
            f"user {cam.user}",
            f"topic write {t.status(cam.line, cam.camera)}",
            f"topic write {t.result(cam.line, cam.camera)}",
            f"topic write {t.review(cam.line, cam.camera)}",
            f"topic read {t.review_ack(cam.line)}",
            f"topic read {t.verdict(cam.line)}",
            f"topic read {t.settings(cam.line)}",
            f"topic read {t.model(cam.line)}",
        ]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ passwords
def find_mosquitto_passwd() -> str:
    exe = shutil.which("mosquitto_passwd") or ("/usr/bin/mosquitto_passwd"
                                               if os.access("/usr/bin/mosquitto_passwd", os.X_OK) else None)
    if exe is None:
        raise BrokerAdminError("mosquitto_passwd is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    return exe


def set_password(password_file: str | Path, user: str, password: str) -> None:
    """Add ``user`` to Mosquitto's password file, or change its password (file made when missing)."""
    if not user or any(c in user for c in ":+#/ \n"):
        raise BrokerAdminError(f"broker user name {user!r} must be non-empty without ':', '+', '#', '/' or spaces")
    if len(password) < 12 or "\n" in password:
        raise BrokerAdminError(f"the password for broker user {user!r} must be one line of 12+ characters")
    path = Path(password_file)
    cmd = [find_mosquitto_passwd()]
    if not path.exists():
        cmd.append("-c")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner and group only: the broker reads it (group mosquitto), nobody else needs to.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
    cmd += [str(path), user]
    try:
        # mosquitto_passwd asks twice; stdin keeps the password out of the process list.
        done = subprocess.run(cmd, input=f"{password}\n{password}\n", capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerAdminError(f"mosquitto_passwd failed for {path}: {exc}") from exc
    if done.returncode != 0:
        raise BrokerAdminError(f"mosquitto_passwd could not set {user!r} in {path}: "
                               f"{(done.stderr or done.stdout).strip()}")


# ------------------------------------------------------------------ qc broker
def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``qc broker`` group with acl and add-user; returns the group's subparsers
    (qc.broker_cli adds the bridge command to them)."""
    from qcloop.commands import add_group

    cmds = add_group(sub, "broker", help="production broker access: the ACL per camera and broker passwords")
    acl = cmds.add_parser("acl", help="write the Mosquitto ACL for the plant's cameras",
                          description="One user per edge (edge-LINE-CAMERA) that may publish only its own "
                                      "camera's topics, plus the station and trainer users.")
    acl.add_argument("--camera", action="append", required=True, metavar="LINE/CAMERA",
                     help="a camera with an edge box (repeat for each)")
    acl.add_argument("--station", action="append", default=None, metavar="NAME=LINE[,LINE...]",
                     help="a review station's broker user and the lines it serves (repeat for each); without "
                          "it one 'station' user serves every line")
    acl.add_argument("--prefix", default=wire.DEFAULT_PREFIX, help=f"topic prefix (default {wire.DEFAULT_PREFIX})")
    acl.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: print)")
    acl.set_defaults(func=cmd_acl)

    add = cmds.add_parser("add-user", help="add a broker user or change its password (mosquitto_passwd)",
                          description="Reads the password from a prompt, or one line from stdin.")
    add.add_argument("password_file", type=Path, help="Mosquitto password file (created when missing)")
    add.add_argument("name", help="edge-LINE-CAMERA, station or trainer")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    add.set_defaults(func=cmd_add_user)

    return cmds


def cmd_acl(args: argparse.Namespace) -> int:
    stations: dict[str, list[str]] | None = None
    if args.station is not None:
        stations = {}
        for spec in args.station:
            name, sep, lines = spec.partition("=")
            if not sep:
                raise BrokerAdminError(f"--station {spec!r} must be written NAME=LINE[,LINE...], "
                                       "e.g. station-a=line1,line2")
            if name in stations:
                raise BrokerAdminError(f"--station {name!r} is given twice; list all its lines in one")
            stations[name] = [line.strip() for line in lines.split(",")] if lines.strip() else []
    text = render_acl([Camera.parse(c) for c in args.camera], args.prefix, stations=stations)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}; reload the broker (SIGHUP) to apply it", file=sys.stderr)
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for broker user {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise BrokerAdminError("the two passwords differ")
    set_password(args.password_file, args.name, password)
    print(f"set the password of {args.name!r} in {args.password_file}", file=sys.stderr)
    return 0
