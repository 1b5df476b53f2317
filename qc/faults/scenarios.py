"""The four fault scenarios on one FaultRig each, and what each one reports.

Every scenario streams ``reviews`` parts (one review each), injects its fault once
a third of them are stored, measures the recovery, lets the edge finish its parts and
drain its outbox, and counts (definitions in qc.faults).
"""
from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.journal import JournalSummary, read_journal
from hardware.actuators import ModbusActuator
from qc.broker import free_port
from qc.faults.rig import DroppedCounter, FaultRig, FaultRigError, RigOptions

SCENARIOS = ("broker-kill", "edge-kill", "station-kill", "station-away", "actuator-down", "order")
#: The scenarios whose edge hands each part's result to a PLC (qc.faults.plc), checked for trigger order.
WITH_PLC = ("actuator-down", "order")
#: actuator-down: parts decided while the PLC is unreachable, before it returns.
PARTS_WHILE_DOWN = 40
#: order: how long the edge box freezes (SIGSTOP). At 40 parts/s that is 40 parts, more than the
#: trigger's backlog of 16 holds: the rest are missed triggers, and the 16 are read after their deadline.
STALL_S = 1.0
#: order: the deadline and inspection queue of an edge whose model is slower than the line (SLOW_MODEL).
ORDER_DEADLINE_MS, ORDER_QUEUE = 200.0, 1
#: order: the fail-safes the scenario must provoke, or its order check proves nothing.
ORDER_FAIL_SAFES = ("late", "queue-full", "missed-trigger")
#: The broker's queue per client in station-away: far less than the reviews made while away.
AWAY_QUEUE = 10
#: Reviews left undelivered (station paused) when the broker or the edge is killed.
BACKLOG = 40


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    sent: int
    stored: int
    lost: int
    duplicates: int
    recovery_s: float
    parts: int
    parts_double_decided: int
    reviews_unwritten: int
    parts_without_review: int  # decided with no frame to review (a camera fault): no review owed
    unknown: int
    edge_rc: int | None
    fault: dict[str, Any] = field(default_factory=dict)  # evidence that the fault happened

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_scenario(name: str, reviews: int, work: Path, options: RigOptions | None = None,
                 say: Callable[[str], None] = lambda msg: None) -> ScenarioResult:
    if name not in SCENARIOS:
        raise FaultRigError(f"unknown fault scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if reviews < 30:
        raise FaultRigError(f"a fault scenario needs at least 30 reviews, got {reviews}")
    options = options or RigOptions()
    if name == "station-away":
        options = replace(options, max_queued_messages=AWAY_QUEUE)
    if name == "order":
        options = replace(options, slow_model=True, deadline_ms=ORDER_DEADLINE_MS, queue_size=ORDER_QUEUE)
    rig = FaultRig(Path(work), options, say=lambda msg: say(f"{name}: {msg}"))
    stream_s = reviews / options.rate_hz
    plc = None
    try:
        if name in WITH_PLC:
            from qc.faults.plc import LoopbackPlc

            rig.plc_port = free_port()
            plc = rig.plc = LoopbackPlc(rig.plc_port).start()
        rig.start_broker()
        rig.start_station()
        rig.start_edge(parts=reviews)
        rig.wait_edge_connected()
        mid = reviews // 3
        rig.wait(lambda: len(rig.stored_ids()) >= mid, 3 * stream_s + 60, f"{mid} reviews stored", proc=rig.edge)
        rig.say(f"{mid} reviews stored; injecting the fault")
        fault, restarted, baseline = _FAULTS[name](rig, reviews)
        rig.wait(lambda: baseline <= rig.stored_ids(), 3 * stream_s + 120,
                 f"the {len(baseline)} reviews sent before the restart to be stored")
        recovery_s = time.monotonic() - restarted
        rig.say(f"recovered in {recovery_s:.2f} s; letting the line finish")
        rig.wait(lambda: rig.edge.poll() is not None, 3 * stream_s + 600, "the edge to finish and drain")
        counts = rig.count()
        if plc is not None:
            fault.update(_order(plc.results, counts.journal))
        if name == "order":
            missing = [k for k in ORDER_FAIL_SAFES if not counts.journal.fail_safes.get(k)]
            if missing:
                raise FaultRigError(f"the order scenario provoked no {', '.join(missing)} parts "
                                    f"(fail-safes {dict(counts.journal.fail_safes)}): its order check proves nothing")
    finally:
        rig.close()
        if plc is not None:
            plc.stop()
    return ScenarioResult(
        name=name, sent=len(counts.sent), stored=counts.stored, lost=counts.lost, duplicates=counts.duplicates,
        recovery_s=round(recovery_s, 3), parts=counts.journal.parts,
        parts_double_decided=len(counts.journal.double_decided), reviews_unwritten=counts.unwritten,
        parts_without_review=counts.journal.parts - len(counts.journal.promised),
        unknown=counts.unknown, edge_rc=rig.edge.returncode, fault=fault)


# ---------------------------------------------------------------------- faults
# Each returns (evidence, monotonic time of the restart/return, review ids sent by then).

def _sent_now(rig: FaultRig) -> frozenset:
    return read_journal(rig.journal_path).stored


def _backlog(rig: FaultRig, n: int = BACKLOG) -> None:
    """Pause the station (SIGSTOP) until n durable reviews are not stored yet.

    At the line's rate the station keeps up, so without a backlog a crash would find
    nothing undelivered to lose. The paused station holds its connection; the broker
    queues for it and the edge's outbox fills.
    """
    rig.pause_station()
    rig.wait(lambda: len(_sent_now(rig) - rig.stored_ids()) >= n, 120, f"{n} reviews waiting for the station",
             proc=rig.edge)


def _broker_kill(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    _backlog(rig)
    stored = rig.stored_ids()
    unstored = len(_sent_now(rig) - stored)
    saved = (rig.work / "broker" / "mosquitto.db").exists()  # persistence really on (as root too)
    rig.broker.kill()
    rc = rig.broker.proc.returncode
    rig.say(f"broker killed (rc {rc}) with {len(stored)} stored and {unstored} waiting for the station")
    rig.resume_station()
    restarted = time.monotonic()
    baseline = _sent_now(rig)
    rig.start_broker()  # same port, same persistence file
    return ({"killed": "broker", "rc": rc, "stored_at_kill": len(stored), "unstored_at_kill": unstored,
             "persistence_file": saved}, restarted, baseline)


def _edge_kill(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    _backlog(rig)
    rc = rig.kill(rig.edge)
    outbox = _outbox_depth(rig.work / "edge" / "data" / "outbox" / "outbox.sqlite3")
    journal = read_journal(rig.journal_path)
    unstored = len(journal.stored - rig.stored_ids())
    rig.say(f"edge killed (rc {rc}) with {outbox} reviews in its outbox ({unstored} not stored), "
            f"{journal.parts} parts decided")
    rig.resume_station()
    restarted = time.monotonic()
    rig.start_edge(parts=max(1, reviews - journal.parts))
    return ({"killed": "edge", "rc": rc, "outbox_at_kill": outbox, "unstored_at_kill": unstored,
             "parts_at_kill": journal.parts}, restarted, journal.stored)


def _station_kill(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    rc = rig.kill(rig.station)
    stored = len(rig.stored_ids())
    rig.say(f"station killed (rc {rc}) with {stored} stored")
    restarted = time.monotonic()
    baseline = _sent_now(rig)
    rig.start_station()
    return {"killed": "station", "rc": rc, "stored_at_kill": stored}, restarted, baseline


def _station_away(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    dropped = DroppedCounter(rig.broker)
    try:
        rig.wait(dropped.seen.is_set, 30, "the broker's $SYS dropped count")
        before = dropped.value
        sent_before = len(_sent_now(rig))
        left = time.monotonic()
        rc = rig.terminate(rig.station)
        rig.say(f"station stopped (rc {rc}); waiting until the broker drops messages queued for it")
        # Away until the broker has dropped messages for it and far more reviews were made
        # than its queue holds: only the edge's outbox can deliver those.
        rig.wait(lambda: dropped.value > before and len(_sent_now(rig)) - sent_before > 3 * AWAY_QUEUE,
                 120, "the broker to drop messages for the absent station", proc=rig.edge)
        away_s = time.monotonic() - left
        made = len(_sent_now(rig)) - sent_before
        drops = dropped.value - before
    finally:
        dropped.close()
    rig.say(f"broker dropped {drops} messages; {made} reviews made while away; station returns")
    restarted = time.monotonic()
    baseline = _sent_now(rig)
    rig.start_station()
    return ({"stopped": "station", "rc": rc, "away_s": round(away_s, 2), "broker_queue": AWAY_QUEUE,
             "dropped_by_broker": drops, "sent_while_away": made}, restarted, baseline)


def _actuator_down(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    """The PLC goes away for a while: every part is still decided, the actuator alarm rises and clears."""
    plc = rig.plc
    seen_before = len(plc.results)
    plc.stop()
    down = time.monotonic()
    rig.say("PLC stopped; waiting for the edge's actuator alarm")
    rig.wait(lambda: "actuator" in ((rig.edge_health() or {}).get("alarms") or {}), 30,
             "the edge's actuator alarm", proc=rig.edge)
    alarm_after_s = time.monotonic() - down
    parts_at = read_journal(rig.journal_path).parts
    rig.wait(lambda: read_journal(rig.journal_path).parts >= min(reviews, parts_at + PARTS_WHILE_DOWN), 60,
             f"{PARTS_WHILE_DOWN} parts decided with the PLC down", proc=rig.edge)
    plc.start()
    restarted = time.monotonic()
    rig.say("PLC back; waiting for the alarm to clear")
    rig.wait(lambda: "actuator" not in ((rig.edge_health() or {}).get("alarms") or {}), 30,
             "the actuator alarm to clear", proc=rig.edge)
    return ({"stopped": "plc", "alarm_after_s": round(alarm_after_s, 2), "down_s": round(restarted - down, 2),
             "cleared_after_s": round(time.monotonic() - restarted, 2), "results_before": seen_before},
            restarted, _sent_now(rig))


def _edge_stall(rig: FaultRig, reviews: int) -> tuple[dict, float, frozenset]:
    """The edge box freezes (SIGSTOP: a swap storm, a thermal stop) on a line whose model is too slow for it.

    Its model already makes parts wait (late) and overflow the inspection queue (queue-full); the stall
    adds parts that passed while nobody read the trigger (missed-trigger) and parts read after their
    deadline. The PLC must still get every result in trigger order, each under its own part's number.
    """
    parts_at = read_journal(rig.journal_path).parts
    rig.edge.send_signal(signal.SIGSTOP)
    try:
        time.sleep(STALL_S)  # the fault is the stall's length itself
    finally:
        rig.edge.send_signal(signal.SIGCONT)
    restarted = time.monotonic()
    rig.say(f"edge stalled {STALL_S:.1f} s after {parts_at} parts and resumed")
    return {"stalled": "edge", "stall_s": STALL_S, "parts_at_stall": parts_at}, restarted, _sent_now(rig)


def _order(results: list[tuple[int, int]], journal: JournalSummary) -> dict:
    """What the PLC saw against what the edge decided: each number at most once, in trigger order, and
    under each number the action the edge decided for that very part (a result shifted by one part, or
    two parts swapped, would show as a mismatch); the parts it never got are counted (an outage)."""
    numbers = [n for n, _ in results]
    codes = ModbusActuator.ACTION_CODES
    mismatched = sum(1 for n, code in results if codes.get(journal.action_by_number.get(n, "")) != code)
    return {"plc_results": len(numbers), "in_trigger_order": all(b > a for a, b in zip(numbers, numbers[1:])),
            "actions_mismatched": mismatched, "missed_by_plc": journal.parts - len(set(numbers)),
            "fail_safes": dict(sorted(journal.fail_safes.items()))}


_FAULTS = {"broker-kill": _broker_kill, "edge-kill": _edge_kill, "station-kill": _station_kill,
           "station-away": _station_away, "actuator-down": _actuator_down, "order": _edge_stall}


def _outbox_depth(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
    finally:
        conn.close()
