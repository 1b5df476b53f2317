"""Fault scenarios (qc.faults): a real mosquitto (persistence on), the edge and the station as processes.

Each scenario kills, stops or stalls one part mid-stream and checks, from the edge's decisions
journal and the station's database, that no review was lost or stored twice and that every
part got exactly one decision; and that the fault really happened.
"""
from __future__ import annotations

import json

import pytest

from edge.journal import DecisionJournal, read_journal
from qc.broker import find_mosquitto
from qc.faults import SCENARIOS, run_scenario
from qc.faults.rig import FaultRigError

REVIEWS = 240

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def check_delivery(r, reviews=REVIEWS):
    assert r.edge_rc == 0, r  # the edge finished its parts and drained its outbox
    assert r.lost == 0, r
    assert r.duplicates == 0, r
    assert r.unknown == 0, r
    assert r.parts == reviews and r.parts_double_decided == 0, r  # every part exactly one decision
    assert r.stored == r.sent and r.sent + r.reviews_unwritten + r.parts_without_review == reviews, r
    assert r.recovery_s >= 0


@needs_mosquitto
def test_broker_killed_mid_stream_and_restarted_from_its_persistence(tmp_path):
    r = run_scenario("broker-kill", REVIEWS, tmp_path)
    assert r.fault["rc"] == -9 and r.fault["persistence_file"], r.fault
    assert r.fault["unstored_at_kill"] > 0  # reviews were on their way when the broker died
    assert 0 < r.fault["stored_at_kill"] < REVIEWS
    check_delivery(r)
    assert r.reviews_unwritten == 0


@needs_mosquitto
def test_edge_killed_with_a_non_empty_outbox_delivers_it_after_restart(tmp_path):
    r = run_scenario("edge-kill", REVIEWS, tmp_path)
    assert r.fault["rc"] == -9 and r.fault["outbox_at_kill"] > 0, r.fault
    assert r.fault["unstored_at_kill"] > 0  # the outbox held reviews the station did not have
    assert 0 < r.fault["parts_at_kill"] < REVIEWS
    check_delivery(r)


@needs_mosquitto
def test_station_killed_while_ingesting_loses_nothing(tmp_path):
    r = run_scenario("station-kill", REVIEWS, tmp_path)
    assert r.fault["rc"] == -9 and 0 < r.fault["stored_at_kill"] < REVIEWS, r.fault
    check_delivery(r)
    assert r.reviews_unwritten == 0


@needs_mosquitto
def test_station_away_longer_than_the_broker_queue_is_served_from_the_edge_outbox(tmp_path):
    r = run_scenario("station-away", REVIEWS, tmp_path)
    # The broker really dropped messages for the absent station, and more reviews were made
    # while it was away than its queue holds: only the edge's outbox could deliver them.
    assert r.fault["dropped_by_broker"] > 0, r.fault
    assert r.fault["sent_while_away"] > r.fault["broker_queue"], r.fault
    check_delivery(r)
    assert r.reviews_unwritten == 0


@needs_mosquitto
def test_a_plc_away_for_a_while_is_alarmed_and_cleared_and_sees_results_in_trigger_order(tmp_path):
    r = run_scenario("actuator-down", REVIEWS, tmp_path)
    f = r.fault
    assert f["stopped"] == "plc"
    assert f["cleared_after_s"] < 30  # the actuator alarm rose (waited on) and cleared once the PLC answered
    assert f["in_trigger_order"], f  # the PLC read each part's number once, in trigger order
    assert f["actions_mismatched"] == 0, f  # and under each number the action of that very part
    assert 0 < f["plc_results"] < REVIEWS  # results reached it before and after the outage ...
    assert f["missed_by_plc"] > 0  # ... and the outage cost some, counted as actuator faults
    check_delivery(r)  # every part still decided once, no review lost or duplicated


@needs_mosquitto
def test_a_stalled_edge_with_a_slow_model_hands_the_plc_every_result_in_trigger_order(tmp_path):
    r = run_scenario("order", REVIEWS, tmp_path)
    f = r.fault
    assert f["stalled"] == "edge"
    # The run had every kind of fail-safe that is decided out of the inspection's order ...
    assert all(f["fail_safes"].get(k, 0) > 0 for k in ("late", "queue-full", "missed-trigger")), f
    # ... and the PLC still read every part once, in trigger order, each under its own number.
    assert f["in_trigger_order"] and f["actions_mismatched"] == 0, f
    assert f["plc_results"] == REVIEWS and f["missed_by_plc"] == 0, f
    check_delivery(r)


def test_the_bench_offers_every_scenario():
    import argparse

    from qc.cli import build_parser

    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return group.choices[name]

    faults = sub(sub(build_parser(), "bench"), "faults")
    scenario = next(a for a in faults._actions if a.dest == "scenario")
    assert tuple(scenario.choices) == SCENARIOS


def test_unknown_scenario_and_too_few_reviews_are_refused(tmp_path):
    with pytest.raises(FaultRigError, match="unknown fault scenario 'power-cut'"):
        run_scenario("power-cut", REVIEWS, tmp_path)
    with pytest.raises(FaultRigError, match="at least 30 reviews, got 5"):
        run_scenario(SCENARIOS[0], 5, tmp_path)


def test_journal_counts_decisions_and_durable_reviews_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "decisions.jsonl"
    j = DecisionJournal(path)
    j.decision("p1", "HOLD", "r1")
    j.decision("p2", "PASS", None)
    j.decision("p3", "HOLD", "r3")
    j.review("r1", "p1")
    j.decision("p1", "HOLD", "r4")  # a part decided twice must show
    j.close()
    with path.open("a") as fh:
        fh.write('{"k":"r","id":"r3"')  # a power cut mid-line
    s = read_journal(path)
    assert s.parts == 3 and s.double_decided == ["p1"]
    assert s.promised == {"r1", "r3", "r4"} and s.stored == {"r1"}
    assert s.torn_lines == 1 and s.actions == {"HOLD": 3, "PASS": 1}
    second = json.loads(path.read_text().splitlines()[1])
    assert {k: second[k] for k in ("k", "part", "action", "review")} == {"k": "d", "part": "p2", "action": "PASS",
                                                                          "review": None}
    assert read_journal(tmp_path / "missing.jsonl").parts == 0
