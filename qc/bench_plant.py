"""`qc bench plant`: several production lines bridged to one plant broker, one line's plant link cut.

What runs, all on loopback, each part a real process:

* the plant broker: Mosquitto with TLS (a CA made for the run), passwords and the plant ACL
  (``qc broker acl`` rendering for every line's cameras and station, plus the bridge block of
  each line from ``qc.bridge``, plus a read-only block for the bench's observer), persistence;
* per line: its own Mosquitto with persistence, bridged to the plant with the bridge config
  ``qc.bridge`` renders (user ``bridge-<line>``, TLS checked against the run's CA). The bridge's
  address is a ``qc.tcplink.TcpLink`` owned by the bench, so cutting a line's plant link is a
  network cut (connections closed, new ones refused), not a broker stop;
* per line: ``--cameras`` edges (``qc edge run`` on the synthetic line, built-in model, decisions
  journal on) at ``--rate`` parts/s each, and one station (``qc station run`` with
  ``[station] lines`` naming its line) on the line broker, with an oracle reviewer that rules on
  the station's queue over HTTP as a person would (qc.demo_review.AutoReviewer), so verdicts are
  published;
* at the plant: the retraining server (``qc train serve``, retrain triggers off) and an observer
  with a persistent session, subscribed before the run, that records every verdict and review id
  reaching the plant (what the trainer receives) and the brokers' ``$SYS`` counters.

The parts are started by ``qc.plant_rig.PlantRig``; this module runs the scenario and counts.

The run: every edge decides ``--duration`` x ``--rate`` parts; ``--cut-after`` seconds after the
edges are up, the plant link of the first line is cut for ``--cut`` seconds and restored. The
edges then drain their outboxes, the reviewers rule on what is left, and the bench waits until
the plant's counts stop moving (bounded) before it counts (definitions on ``count``).

The oracle answers from the synthetic generator's ground truth. Each edge replays ``PRERENDER``
pre-rendered parts, and the oracle maps a part to its frame by the part's number, so a part whose
frame was never captured (late, missed trigger) shifts the answers after it on that camera; the
verdicts stay valid verdicts, which is all this bench measures.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.journal import JournalSummary, read_journal
from qc import bridge
from qc.broker import find_mosquitto
from qc.plant_rig import (
    DEADLINE_MS,
    FRAME,
    PREFIX,
    RESTART_TIMEOUT,
    REVIEWS_PER_LINE_S,
    PlantBenchError,
    PlantOptions,
    PlantRig,
    sys_rates,
)
from qcloop import wire
from qcloop.errors import WireError

#: The plant target: everything the cut line made during the cut is at the plant this soon after.
RECOVERY_TARGET_S = 10.0


@dataclass
class Cut:
    line: str
    start: float = 0.0  # epoch seconds
    end: float = 0.0
    after_s: float = 0.0  # after the edges were up
    connections_cut: int = 0
    bridge_down_seen: bool = False


def run(work: Path, options: PlantOptions, say: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Run the plant as the module docstring says; returns the report (see ``count``)."""
    if find_mosquitto() is None:
        raise PlantBenchError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    rig = PlantRig(work, options, say)
    t_start = time.monotonic()
    cut = Cut(rig.lines[0].name)
    try:
        rig.start_plant()
        rig.start_trainer()
        for line in rig.lines:
            rig.start_line_broker(line)
            rig.start_station(line)
        for line in rig.lines:
            rig.wait(lambda line=line: rig.bridge_up(line), 30, f"{line.name}'s bridge to the plant")
            rig.wait(lambda line=line: rig.station_healthy(line), 120, f"{line.name}'s station",
                     line.station, line.work / "station" / "station.log")
            rig.start_reviewer(line)
        say(f"{len(rig.lines)} line brokers bridged, stations up; starting "
            f"{options.lines * options.cameras} edges at {options.rate:g} parts/s, audit rate {options.audit_rate}")
        for line in rig.lines:
            for camera in options.camera_names():
                rig.start_edge(line, camera)
        for line in rig.lines:
            for camera in options.camera_names():
                rig.wait(lambda line=line, camera=camera: rig.edge_connected(line, camera), 120,
                         f"edge {line.name}/{camera} to reach its line broker", line.edges[camera],
                         line.work / f"edge-{camera}" / "edge.log")
        t0 = time.monotonic()
        sys_before = _sys_snapshot(rig)
        say("edges up; the line runs")
        if options.cut > 0:
            _cut_link(rig, cut, t0, options, say)
        edges = [p for line in rig.lines for p in line.edges.values()]
        rig.wait(lambda: all(p.poll() is not None for p in edges), options.duration + 600,
                 "the edges to finish their parts and drain their outboxes")
        t_end = time.monotonic()
        sys_after = _sys_snapshot(rig)
        say(f"edges finished after {t_end - t0:.1f} s; letting the reviewers and the plant settle")
        _settle(rig)
        report = count(rig, options, cut)
        report["rates_window_s"] = round(t_end - t0, 2)
        for line, entry in zip(rig.lines, report["lines"]):
            entry["line_broker"] = sys_rates(sys_before[line.name], sys_after[line.name], t_end - t0)
            entry["edge_rc"] = sorted({p.returncode for p in line.edges.values()})
        report["plant_broker"] = sys_rates(sys_before["plant"], sys_after["plant"], t_end - t0)
        report["trainer_alive"] = rig.trainer.poll() is None
        report["trainer_reported_verdicts"] = _trainer_count(rig)
    finally:
        rig.close()
    report["wall_s"] = round(time.monotonic() - t_start, 1)
    return report


def _sys_snapshot(rig: PlantRig) -> dict[str, dict[str, int]]:
    out = {line.name: dict(line.listener.sys) for line in rig.lines}
    out["plant"] = dict(rig.observer.sys)
    return out


def _cut_link(rig: PlantRig, cut: Cut, t0: float, o: PlantOptions, say: Callable[[str], None]) -> None:
    line = rig.lines[0]
    stop = threading.Event()  # the cut's start and length are the fault itself: a schedule, not a readiness wait
    stop.wait(max(0.0, t0 + o.cut_after - time.monotonic()))
    cut.start = time.time()
    cut.after_s = round(time.monotonic() - t0, 2)
    cut.connections_cut = line.link.cut()
    say(f"cut {line.name}'s plant link ({cut.connections_cut} connection(s) closed; new ones refused) "
        f"for {o.cut:g} s")
    until = time.monotonic() + o.cut
    while not stop.wait(min(0.2, max(0.0, until - time.monotonic()))) and time.monotonic() < until:
        cut.bridge_down_seen = cut.bridge_down_seen or line.listener.retained.get(
            bridge.state_topic(line.name, PREFIX)) == b"0"
    cut.bridge_down_seen = cut.bridge_down_seen or line.listener.retained.get(
        bridge.state_topic(line.name, PREFIX)) == b"0"
    line.link.restore()
    cut.end = time.time()
    say(f"restored {line.name}'s plant link")


def _settle(rig: PlantRig, quiet_s: float = 3.0, bound_s: float = 180.0) -> None:
    """Wait until every station has ruled on its queue and the plant's counts have not moved for quiet_s
    (bounded: what has not arrived by then is counted missing)."""
    deadline = time.monotonic() + bound_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = (rig.observer.snapshot(),
                 tuple(line.query("SELECT COUNT(*), SUM(open) FROM reviews")[0] if line.station_db.exists()
                       else (0, 0) for line in rig.lines),
                 tuple(line.query("SELECT COUNT(*) FROM verdicts WHERE undone = 0") for line in rig.lines))
        queues_empty = all((row[1] or 0) == 0 for row in state[1])
        if state != last:
            last, since = state, time.monotonic()
        elif queues_empty and time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)  # poll interval while waiting for the counts to settle


def _trainer_count(rig: PlantRig) -> int | None:
    for topic, payload in rig.observer.retained.items():
        if "/train/status" in topic:
            try:
                return wire.TrainStatus.decode(payload).verdicts_since_last
            except WireError:
                return None
    return None


# ---------------------------------------------------------------------- counting
def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def count(rig: PlantRig, o: PlantOptions, cut: Cut) -> dict[str, Any]:
    """The figures per line and in total.

    parts: parts decided (edge journals); parts_decided_once: every edge decided exactly its
    parts, none twice. reviews_sent: review ids the edges made durable in their outboxes;
    reviews_stored: distinct ids in the line's station; lost: sent, never stored; duplicates:
    review rows beyond one per id, parts with more than one stored review, parts decided twice.
    edge_to_station_ms: capture time to the station's store time. verdicts: live verdicts made at
    the station; verdicts_at_trainer / reviews_at_plant: distinct ids that reached the plant broker
    (recorded by the observer, subscribed as the trainer is). recovery_s (the cut line): from the
    link's return until the plant has every review captured and every verdict made during the cut;
    bridge_back_s: from the link's return until the line broker reports its bridge connected again
    (the rest of recovery_s is the queued backlog crossing the link).
    """
    lines, all_parts_once = [], True
    for line in rig.lines:
        journals = [read_journal(line.journal(cam)) for cam in o.camera_names()]
        merged = _merge(journals)
        rows = line.query("SELECT id, part_id, captured_at, received_at, reason FROM reviews")
        stored = {r[0] for r in rows}
        per_part = Counter(r[1] for r in rows)
        latency = [(r[3] - r[2]) * 1000.0 for r in rows]
        verdicts = line.query("SELECT review_id, time FROM verdicts WHERE undone = 0")
        verdict_ids = {v[0] for v in verdicts}
        at_plant_v, at_plant_r = rig.observer.of_line(line.name)
        once = (all(j.parts == o.parts_per_camera for j in journals) and not merged.double_decided)
        all_parts_once = all_parts_once and once
        lines.append({
            "line": line.name, "cameras": o.cameras,
            "parts": merged.parts, "parts_expected": o.parts_per_camera * o.cameras, "parts_decided_once": once,
            "actions": dict(merged.actions), "fail_safes": dict(merged.fail_safes),
            "reviews_sent": len(merged.stored), "reviews_stored": len(stored),
            "review_reasons": dict(Counter(r[4] for r in rows)),
            "lost": len(merged.stored - stored),
            "duplicates": (len(rows) - len(stored)) + sum(1 for n in per_part.values() if n > 1)
            + len(merged.double_decided),
            "unknown": len(stored - merged.promised),
            "edge_to_station_ms_p50": _p(latency, 0.50), "edge_to_station_ms_p99": _p(latency, 0.99),
            "verdicts": len(verdict_ids), "verdicts_at_trainer": len(verdict_ids & set(at_plant_v)),
            "verdicts_missing_at_plant": len(verdict_ids - set(at_plant_v)),
            "reviews_at_plant": len(stored & set(at_plant_r)),
            "reviews_missing_at_plant": len(stored - set(at_plant_r)),
            "copies_at_plant": sum(rig.observer.verdict_copies[i] - 1 for i in at_plant_v)
            + sum(rig.observer.review_copies[i] - 1 for i in at_plant_r),
            "reviewer_answered": line.reviewer.answered if line.reviewer else 0,
            "reviewer_error": line.reviewer.error if line.reviewer else None,
            "link": {"bytes_up": line.link.bytes_up, "bytes_down": line.link.bytes_down,
                     "connections": line.link.connections},
        })
    cut_report = _cut_report(rig, cut) if o.cut > 0 else None
    keys = ("parts", "parts_expected", "reviews_sent", "reviews_stored", "lost", "duplicates", "unknown",
            "verdicts", "verdicts_at_trainer", "verdicts_missing_at_plant", "reviews_at_plant",
            "reviews_missing_at_plant", "copies_at_plant")
    total: dict[str, Any] = {k: sum(entry[k] for entry in lines) for k in keys}
    total["edge_to_station_ms_p99"] = max((e["edge_to_station_ms_p99"] or 0.0) for e in lines)
    total["parts_decided_once"] = all_parts_once
    targets = {"lost": 0, "duplicates": 0, "parts_decided_once": True, "stored_during_cut": "> 0",
               "verdicts_during_cut": "> 0", "verdicts_at_trainer": "== verdicts",
               "recovery_s": f"<= {RECOVERY_TARGET_S:g}"}
    met = {
        "lost": total["lost"] == 0,
        "duplicates": total["duplicates"] == 0 and total["unknown"] == 0,
        "parts_decided_once": all_parts_once,
        "cut_line_kept_reviewing": bool(cut_report and cut_report["stored_during_cut"] > 0
                                        and cut_report["verdicts_during_cut"] > 0) if o.cut > 0 else None,
        "verdicts_at_trainer": all(e["verdicts_at_trainer"] == e["verdicts"] > 0 for e in lines),
        "recovery_s": (cut_report["recovery_s"] is not None and cut_report["recovery_s"] <= RECOVERY_TARGET_S)
        if cut_report else None,
    }
    return {"lines": lines, "total": total, "cut": cut_report, "targets": targets, "met": met,
            "ok": all(v is not False for v in met.values())}


def _merge(journals: list[JournalSummary]) -> JournalSummary:
    decisions, actions, fail_safes = Counter(), Counter(), Counter()
    promised, stored = set(), set()
    for j in journals:
        decisions.update(j.decisions)
        actions.update(j.actions)
        fail_safes.update(j.fail_safes)
        promised |= j.promised
        stored |= j.stored
    return JournalSummary(decisions=decisions, actions=actions, promised=frozenset(promised),
                          stored=frozenset(stored), fail_safes=fail_safes)


def _cut_report(rig: PlantRig, cut: Cut) -> dict[str, Any]:
    line = next(ln for ln in rig.lines if ln.name == cut.line)
    made_r = {r[0] for r in line.query("SELECT id FROM reviews WHERE captured_at >= ? AND captured_at < ?",
                                       cut.start, cut.end)}
    made_v = {v[0] for v in line.query("SELECT review_id FROM verdicts WHERE undone = 0 AND time >= ? AND time < ?",
                                       cut.start, cut.end)}
    stored_during = line.query("SELECT COUNT(*) FROM reviews WHERE received_at >= ? AND received_at < ?",
                               cut.start, cut.end)[0][0]
    at_v, at_r = rig.observer.of_line(line.name)
    arrivals = [at_r.get(i) for i in made_r] + [at_v.get(i) for i in made_v]
    missing = sum(1 for t in arrivals if t is None)
    last = max((t for t in arrivals if t is not None), default=cut.end)
    state = bridge.state_topic(line.name, PREFIX)
    back = min((t for t, topic, payload in line.listener.changes if topic == state and payload == b"1"
                and t >= cut.end), default=None)
    return {"line": cut.line, "after_s": cut.after_s, "seconds": round(cut.end - cut.start, 2),
            "connections_cut": cut.connections_cut, "bridge_reported_down": cut.bridge_down_seen,
            "bridge_back_s": None if back is None else round(back - cut.end, 2),
            "stored_during_cut": stored_during, "verdicts_during_cut": len(made_v),
            "reviews_made_during_cut": len(made_r), "missing_at_plant": missing,
            "recovery_s": None if missing or not arrivals else round(max(0.0, last - cut.end), 2)}


# ---------------------------------------------------------------------- the command
def main(args: Any) -> int:
    options = PlantOptions(lines=args.lines, cameras=args.cameras, rate=args.rate, duration=args.duration,
                           cut_after=args.cut_after, cut=args.cut)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"bench plant: {msg}", file=sys.stderr, flush=True))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qc-bench-plant-"))
    if args.keep and work.exists() and any(work.iterdir()):
        raise PlantBenchError(f"--keep {work}: the directory is not empty (the bench needs fresh brokers and "
                              "databases); give a new or empty one")
    try:
        report = run(work, options, say)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["options"] = {"lines": options.lines, "cameras": options.cameras, "rate": options.rate,
                         "duration": options.duration, "cut_after": options.cut_after, "cut": options.cut,
                         "parts_per_camera": options.parts_per_camera, "audit_rate": options.audit_rate,
                         "frame": list(FRAME), "deadline_ms": DEADLINE_MS}
    report["notes"] = [
        "plant listener: TLS (a CA made for the run), passwords and the plant ACL; line brokers listen on "
        "loopback without TLS or users (the line's own parts only)",
        f"bridge restart_timeout {RESTART_TIMEOUT[0]} {RESTART_TIMEOUT[1]} (production default 2 30)",
        f"audit rate raised to {options.audit_rate} so each line sends about {REVIEWS_PER_LINE_S:g} reviews/s",
        "verdicts_at_trainer / reviews_at_plant: ids recorded at the plant broker by an observer with the "
        "trainer's subscription; trainer_reported_verdicts is the trainer's own count as of its last status "
        "(published at most once a second, so it may trail)",
        "line_broker / plant_broker rates: $SYS PUBLISH messages and bytes per second over rates_window_s",
    ]
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0 if report["ok"] else 1


def _print_table(report: dict[str, Any]) -> None:
    cols = ("parts", "reviews_sent", "reviews_stored", "lost", "duplicates", "edge_to_station_ms_p99", "verdicts",
            "verdicts_at_trainer", "reviews_at_plant")
    print(f"{'line':>8} " + " ".join(f"{c:>14}" for c in cols) + f" {'broker msg/s in/out':>20}")
    for e in report["lines"]:
        b = e["line_broker"]
        print(f"{e['line']:>8} " + " ".join(f"{str(e[c]):>14}" for c in cols)
              + f" {b['publish_in_per_s']:>9}/{b['publish_out_per_s']:<9}")
    t = report["total"]
    print(f"{'total':>8} " + " ".join(f"{str(t.get(c, '')):>14}" for c in cols))
    p = report["plant_broker"]
    print(f"plant broker: {p['publish_in_per_s']} msg/s in, {p['publish_out_per_s']} msg/s out, "
          f"{p['bytes_in_per_s'] / 1e6:.2f} MB/s in")
    if report["cut"]:
        c = report["cut"]
        print(f"cut {c['line']} for {c['seconds']} s: stored during the cut {c['stored_during_cut']}, verdicts during "
              f"the cut {c['verdicts_during_cut']}, recovery {c['recovery_s']} s after the link returned")
    print("met: " + ", ".join(f"{k} {v}" for k, v in report["met"].items()) + f"  -> {'OK' if report['ok'] else 'NOT MET'}")
