"""A production line's own broker bridged to the plant broker, with Mosquitto's own bridge.

Each production line runs its own Mosquitto beside its edge boxes and its review
station (``config/mosquitto/line.conf``), so the line keeps deciding, reviewing and
acknowledging while the plant network is down. The bridge is configured on the LINE
broker and connects out to the PLANT broker over TLS as the user ``bridge-<line>``.
``qc broker bridge`` writes the two pieces:

* the line broker's bridge config (``bridge-<line>.conf``, for the line broker's
  ``include_dir``); it holds the bridge user's password, so it is written owner-only
  (0600);
* the plant broker's ACL block for ``bridge-<line>`` (``acl-bridge-<line>``, to
  append to the plant's ACL).

What crosses the bridge (P = the topic prefix, qc/v1 by default)::

    up   (line -> plant)  P/<line>/+/status   QoS 1 (retained: the retain flag is kept)
                          P/<line>/+/result   QoS 0 (not queued while the link is down)
                          P/<line>/+/review   QoS 1
                          P/<line>/verdict    QoS 1
                          P/train/request     QoS 1 (the line's station asks the plant's trainer)
    down (plant -> line)  P/model/<line>      QoS 1 (retained)
                          P/train/status/#    QoS 1 (retained; one per product)
    stays on the line     P/<line>/review-ack, P/<line>/settings
    the bridge's state    P/bridge/<line>/state, on the line broker only: 1 up, 0 down (retained)

The plant ACL lets ``bridge-<line>`` write only that line's up-topics and read only
that line's down-topics: one line's broker cannot speak for another line, nor
announce a model. The bridge keeps a persistent session on both sides
(``cleansession false``): QoS 1 messages published on the line while the plant is
unreachable wait in the line broker's queue (kept across a restart by its
persistence, bounded by ``max_queued_messages``/``max_queued_bytes``) and go up on
reconnection; models announced meanwhile wait in the plant's queue for the bridge,
and the retained ones arrive again on every resubscription anyway.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from qc.brokeradmin import BrokerAdminError
from qcloop import wire
from qcloop.errors import WireError
from qcloop.files import write_durably

#: The topic level under the prefix where the line broker reports its bridge's state (reserved as a line name).
BRIDGE_LEVEL = "bridge"
#: The plant listener's TLS version (config/mosquitto/production.conf).
TLS_VERSION = "tlsv1.2"
#: The plant's max_packet_size: a bigger message is dropped at the line, not sent to break the link again and again.
MAX_PACKET_BYTES = 8500000
MIN_PASSWORD_CHARS = 12  # as qc.brokeradmin.set_password


@dataclass(frozen=True)
class BridgeTopic:
    """One ``topic`` line of the bridge: a pattern, its direction (out = line -> plant, in = plant -> line), QoS."""

    pattern: str
    direction: str
    qos: int
    what: str

    def conf_line(self) -> str:
        return f"topic {self.pattern} {self.direction} {self.qos}"


# ------------------------------------------------------------------ names
def check_line(line: str) -> str:
    """The line name, or BrokerAdminError naming it: the rules of qc.brokeradmin.Camera, plus no spaces or ':'.

    The name goes into config lines split at spaces, a user name (no ':' in Mosquitto's
    password file) and topics.
    """
    try:
        wire.check_line_name(line)  # one topic level, none of the prefix's own (BRIDGE_LEVEL among them)
    except WireError as exc:
        raise BrokerAdminError(f"line name {line!r}: {exc}") from exc
    if any(c.isspace() or c == ":" or not c.isprintable() for c in line):
        raise BrokerAdminError(f"line name {line!r} must have no spaces, ':' or control characters "
                               "(it names the bridge, its broker user and its config lines)")
    return line


def check_prefix(prefix: str) -> str:
    levels = prefix.split("/")
    if (not prefix or any(not level for level in levels) or any(c in prefix for c in "+#")
            or any(c.isspace() or not c.isprintable() for c in prefix)):
        raise BrokerAdminError(f"topic prefix {prefix!r} must be topic levels joined by '/' (e.g. {wire.DEFAULT_PREFIX}), "
                               "without '+', '#', spaces, or a '/' at either end")
    return prefix


def bridge_user(line: str) -> str:
    """The plant broker user the bridge of ``line`` connects as."""
    return f"bridge-{check_line(line)}"


def state_topic(line: str, prefix: str = wire.DEFAULT_PREFIX) -> str:
    """Where the line broker publishes its bridge's state (retained "1" connected, "0" not); never sent up."""
    return f"{check_prefix(prefix)}/{BRIDGE_LEVEL}/{check_line(line)}/state"


def bridge_topics(line: str, prefix: str = wire.DEFAULT_PREFIX) -> list[BridgeTopic]:
    """What the bridge of ``line`` carries, as the contract of qcloop.wire.Topics has it."""
    t = wire.Topics(check_prefix(prefix))
    check_line(line)
    any_camera = t.all_reviews(line).rsplit("/", 1)[0]  # P/<line>/+
    return [
        BridgeTopic(f"{any_camera}/status", "out", 1, "the edges' status (retained)"),
        BridgeTopic(f"{any_camera}/result", "out", 0, "the edges' results (QoS 0: not queued while the link is down)"),
        BridgeTopic(t.all_reviews(line), "out", 1, "the edges' reviews"),
        BridgeTopic(t.verdict(line), "out", 1, "the station's verdicts, for the trainer"),
        BridgeTopic(t.retrain_request(), "out", 1, "the station's retrain requests, for the trainer"),
        BridgeTopic(t.model(line), "in", 1, "the trainer's model announcements for this line (retained)"),
        BridgeTopic(t.all_train_status(), "in", 1, "the trainer's status, one per product (retained)"),
    ]


# ------------------------------------------------------------------ inputs
def parse_plant(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), with an error that names the input."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise BrokerAdminError(f"--plant {text!r} must be HOST:PORT, e.g. plant-broker.example:8883")
    if ":" in host or host.startswith("["):
        raise BrokerAdminError(f"--plant {text!r}: give the plant broker's host name, not an IPv6 address "
                               "(its certificate must name that host)")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise BrokerAdminError(f"--plant {text!r}: the host must have no spaces or control characters")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise BrokerAdminError(f"--plant {text!r}: the port {port_text!r} must be a number from 1 to 65535")
    return host, port


def check_ca(path: Path) -> Path:
    """The plant CA file as an absolute path (mosquitto does not start in this directory), readable and PEM."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise BrokerAdminError(f"--ca {path}: cannot read the plant's CA certificate: {exc.strerror or exc}") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise BrokerAdminError(f"--ca {path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    resolved = path.resolve()
    if any(c in str(resolved) for c in "\r\n"):
        raise BrokerAdminError(f"--ca {path}: the path must not contain a line break")
    return resolved


def check_password(password: str, source: str) -> str:
    """One line of 12+ characters without spaces at either end (a config line keeps no outer spaces)."""
    if not password:
        raise BrokerAdminError(f"{source} is empty: the bridge needs the password of its plant broker user")
    if any(not c.isprintable() for c in password):
        raise BrokerAdminError(f"{source}: the password must be one line without control characters")
    if password != password.strip():
        raise BrokerAdminError(f"{source}: the password must not start or end with a space")
    if len(password) < MIN_PASSWORD_CHARS:
        raise BrokerAdminError(f"{source}: the password must have {MIN_PASSWORD_CHARS}+ characters "
                               f"(it has {len(password)})")
    return password


def read_password(password_file: Path | None = None, password_env: str | None = None) -> str:
    """The bridge user's password, from a file (its first line) or an environment variable, read now."""
    if (password_file is None) == (password_env is None):
        raise BrokerAdminError("give the bridge user's password with --password-file FILE or --password-env VAR "
                               "(exactly one): it is written into the bridge config, never taken from the command line")
    if password_file is not None:
        try:
            text = password_file.read_text()
        except OSError as exc:
            raise BrokerAdminError(f"--password-file {password_file}: {exc.strerror or exc}") from exc
        lines = text.splitlines()
        if len(lines) > 1 and any(ln.strip() for ln in lines[1:]):
            raise BrokerAdminError(f"--password-file {password_file}: must hold one line, the password")
        return check_password(lines[0] if lines else "", f"--password-file {password_file}")
    assert password_env is not None
    value = os.environ.get(password_env)
    if value is None:
        raise BrokerAdminError(f"--password-env {password_env}: that environment variable is not set")
    return check_password(value.rstrip("\r\n"), f"--password-env {password_env}")


# ------------------------------------------------------------------ rendering
def render_bridge_conf(line: str, plant_host: str, plant_port: int, ca_file: str | Path, password: str,
                       prefix: str = wire.DEFAULT_PREFIX, restart_timeout: tuple[int, ...] = (2, 30),
                       keepalive_s: int = 30) -> str:
    """The line broker's bridge config (a conf.d snippet). It holds ``password``: write it owner-only."""
    check_line(line)
    check_prefix(prefix)
    check_password(password, "the bridge password")
    if not 1 <= len(restart_timeout) <= 2 or any(not 1 <= s <= 3600 for s in restart_timeout):
        raise BrokerAdminError(f"restart timeout {restart_timeout!r}: one or two whole seconds from 1 to 3600")
    if len(restart_timeout) == 2 and restart_timeout[0] > restart_timeout[1]:
        raise BrokerAdminError(f"restart timeout {restart_timeout!r}: the base must not exceed the cap")
    if not 5 <= keepalive_s <= 3600:
        raise BrokerAdminError(f"bridge keepalive {keepalive_s}: 5 to 3600 seconds")
    user = bridge_user(line)
    topics = bridge_topics(line, prefix)
    out = [
        f"# The bridge of production line {line}'s broker to the plant broker (made by `qc broker bridge`;",
        "# run it again rather than editing this file).",
        f"# It holds the password of the plant broker user {user}: keep it owner-only (0600),",
        "# owned by the user mosquitto runs as (it is read again on reload).",
        "# Mosquitto sets bridges up at start only: restart the line broker to apply a change.",
        "#",
        f"# Stays on the line: {wire.Topics(prefix).review_ack(line)}, {wire.Topics(prefix).settings(line)}.",
        f"# The bridge's state, on the line broker only: {state_topic(line, prefix)} (retained 1 up, 0 down).",
        f"connection qc-{line}",
        f"address {plant_host}:{plant_port}",
        "",
        "# TLS to the plant broker, checked against the plant's CA and its host name.",
        f"bridge_cafile {ca_file}",
        f"bridge_tls_version {TLS_VERSION}",
        "bridge_insecure false",
        "",
        "# Who the bridge is on the plant broker (its ACL: this line's topics only).",
        f"remote_username {user}",
        f"remote_password {password}",
        f"remote_clientid {user}",
        f"local_clientid {user}-local",
        "",
        "# Persistent sessions on both sides: QoS 1 messages wait while the link is down.",
        "cleansession false",
        "bridge_protocol_version mqttv311",
        "# Tell the plant broker this is a bridge: retained flags are kept, loops are detected.",
        "try_private true",
        "start_type automatic",
        f"restart_timeout {' '.join(str(s) for s in restart_timeout)}",
        f"keepalive_interval {keepalive_s}",
        f"bridge_max_packet_size {MAX_PACKET_BYTES}",
        "",
        "notifications true",
        "notifications_local_only true",
        f"notification_topic {state_topic(line, prefix)}",
        "",
        "# out = line -> plant, in = plant -> line; the number is the QoS.",
    ]
    for topic in topics:
        out += [f"# {topic.what}", topic.conf_line()]
    return "\n".join(out) + "\n"


def render_bridge_acl(line: str, prefix: str = wire.DEFAULT_PREFIX) -> str:
    """The plant broker's ACL block for ``bridge-<line>``: write this line's up-topics, read its down-topics."""
    user = bridge_user(line)
    topics = bridge_topics(line, prefix)
    out = [
        "",
        f"# The bridge of line {line}'s broker (made by `qc broker bridge`): it carries {line}'s",
        "# status, results, reviews, verdicts and retrain requests up, and reads its models and the trainer's status.",
        f"user {user}",
    ]
    out += [f"topic write {t.pattern}" for t in topics if t.direction == "out"]
    out += [f"topic read {t.pattern}" for t in topics if t.direction == "in"]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ files
def conf_name(line: str) -> str:
    return f"bridge-{check_line(line)}.conf"


def acl_name(line: str) -> str:
    return f"acl-bridge-{check_line(line)}"


def output_paths(line: str, output: str | Path) -> tuple[Path, Path]:
    """(bridge config, plant ACL block) for ``-o``: a directory (existing or ending in '/'), or the config's file."""
    if str(output).endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / conf_name(line), Path(output) / acl_name(line)
    output = Path(output)
    if output.suffix != ".conf":
        raise BrokerAdminError(f"-o {output}: name a directory, or a file ending in .conf "
                               "(mosquitto's include_dir loads only *.conf files)")
    return output, output.parent / acl_name(line)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` owner-only (0600) from the first byte, replacing it atomically.

    A file written again keeps its owner (e.g. the user mosquitto runs as) where this process may set it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    write_durably(path, text.encode())  # its temporary file is made by mkstemp: 0600 from the first byte
    if before is not None and (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, before.st_uid, before.st_gid)
        except PermissionError:
            pass  # not root: the file is this user's, as the command's output says


def write_bridge_files(line: str, output: str | Path, conf_text: str, acl_text: str) -> tuple[Path, Path]:
    conf_path, acl_path = output_paths(line, output)
    try:
        write_secret(conf_path, conf_text)
        acl_path.write_text(acl_text)
    except OSError as exc:
        raise BrokerAdminError(f"-o {output}: cannot write the bridge files: {exc}") from exc
    return conf_path, acl_path


# ------------------------------------------------------------------ qc broker bridge
def register_bridge(cmds: argparse._SubParsersAction) -> None:
    """Add ``qc broker bridge`` to the ``qc broker`` group."""
    p = cmds.add_parser(
        "bridge", help="bridge a production line's own broker to the plant broker (Mosquitto bridge)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Writes the line broker's bridge config (bridge-LINE.conf, for the include_dir of\n"
                    "config/mosquitto/line.conf) and the plant broker's ACL block for the bridge user\n"
                    "bridge-LINE (acl-bridge-LINE, to append to the plant's ACL).\n\n"
                    "The bridge connects from the line broker out to the plant broker over TLS. It carries\n"
                    "the line's status, results, reviews, verdicts and retrain requests up, and its model\n"
                    "announcements and the trainer's status down; review-acks and settings stay on the line.\n"
                    "Persistent sessions and the line broker's persistence keep QoS 1 messages while the\n"
                    "plant is unreachable. The plant ACL block lets bridge-LINE write only LINE's topics.\n\n"
                    "The bridge config holds bridge-LINE's password, so it is written owner-only (0600).\n"
                    "The password is read from a file or an environment variable, never from the command line.",
        epilog="example:\n"
               "  qc broker bridge line1 --plant plant-broker.example:8883 \\\n"
               "      --ca /etc/mosquitto/qcloop/certs/plant-ca.crt --password-file /root/bridge-line1.secret \\\n"
               "      -o /etc/mosquitto/qcloop/bridge.d/")
    p.add_argument("line", metavar="LINE", help="the production line whose broker this is (e.g. line1)")
    p.add_argument("--plant", required=True, metavar="HOST:PORT",
                   help="the plant broker's TLS listener; HOST must be a name its certificate has")
    p.add_argument("--ca", required=True, type=Path, metavar="FILE",
                   help="the CA certificate (PEM) that signed the plant broker's certificate")
    pw = p.add_mutually_exclusive_group(required=True)
    pw.add_argument("--password-file", type=Path, metavar="FILE",
                    help="a file whose one line is bridge-LINE's password on the plant broker")
    pw.add_argument("--password-env", metavar="VAR", help="an environment variable holding that password")
    p.add_argument("--prefix", default=wire.DEFAULT_PREFIX, help=f"topic prefix (default {wire.DEFAULT_PREFIX})")
    p.add_argument("--restart-timeout", type=int, nargs="+", default=[2, 30], metavar="S",
                   help="seconds before the bridge reconnects: BASE CAP for a growing, jittered wait "
                        "(default 2 30), or one constant")
    p.add_argument("-o", "--output", required=True, metavar="DIR_OR_FILE",
                   help="a directory (gets bridge-LINE.conf and acl-bridge-LINE), or the .conf file to write "
                        "(acl-bridge-LINE goes beside it)")
    p.set_defaults(func=cmd_bridge)


def cmd_bridge(args: argparse.Namespace) -> int:
    line = check_line(args.line)
    prefix = check_prefix(args.prefix)
    host, port = parse_plant(args.plant)
    ca = check_ca(args.ca)
    password = read_password(args.password_file, args.password_env)
    conf = render_bridge_conf(line, host, port, ca, password, prefix, tuple(args.restart_timeout))
    acl = render_bridge_acl(line, prefix)
    conf_path, acl_path = write_bridge_files(line, args.output, conf, acl)
    user = bridge_user(line)
    print(f"wrote {conf_path} (mode 0600: it holds the password of {user})\n"
          f"wrote {acl_path} (the plant broker's ACL block for {user})\n"
          "next:\n"
          f"  1. on the plant broker, give {user} the same password:\n"
          f"       qc broker add-user /etc/mosquitto/qcloop/passwd {user}\n"
          f"  2. append the ACL block to the plant's ACL and reload the plant broker:\n"
          f"       cat {acl_path} >> /etc/mosquitto/qcloop/acl && systemctl reload mosquitto\n"
          "     (`qc broker acl -o` rewrites that file: append the block again after it)\n"
          f"  3. on the line broker, keep {conf_path.name} in the include_dir of its config\n"
          "     (config/mosquitto/line.conf: /etc/mosquitto/qcloop/bridge.d/), owned by the user mosquitto\n"
          f"     runs as (chown mosquitto {conf_path}; it stays 0600), and RESTART the line broker:\n"
          "     mosquitto sets bridges up at start only, a reload does not apply them\n"
          f"  4. check: the line broker publishes 1 (retained) on {state_topic(line, prefix)} when the\n"
          f"     bridge is up, 0 when it is down (a user reading it needs `topic read {state_topic(line, prefix)}`\n"
          f"     in the line broker's ACL); the plant's log shows {user} connecting",
          file=sys.stderr)
    return 0
