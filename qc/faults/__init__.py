"""Fault scenarios: crash the broker, the edge or the station mid-stream, take the PLC away, stall
the edge; count every review and check every result the PLC got.

One harness (used by ``tests/test_faults.py`` and ``qc bench faults``) runs a real
mosquitto with persistence, the edge (``qc edge run``) and the station
(``qc station run``) as separate processes on loopback, with configs written into a
work directory. The edge runs a synthetic line whose decision thresholds send every
part to review (pass_below 0, reject_above 1: each part is HOLD + one review), and
keeps its decisions journal (``[edge].journal``, see edge.journal).

Scenarios (``SCENARIOS``):

1. ``broker-kill``: mosquitto is SIGKILLed mid-stream and restarted from its persistence file;
2. ``edge-kill``: the edge is SIGKILLed with a non-empty outbox and restarted on the same data;
3. ``station-kill``: the station is SIGKILLed while ingesting and restarted;
4. ``station-away``: the station stops for longer than the broker's queue for it carries
   (``max_queued_messages`` is small), so the broker drops messages, and comes back;
5. ``actuator-down``: the edge hands each part's result to a Modbus PLC on loopback
   (qc.faults.plc, with the ready/acknowledge handshake); the PLC stops while 40 parts are
   decided and returns. The edge's actuator alarm must rise and clear, every part is still
   decided once, and the PLC must have read the part numbers in trigger order
   (``in_trigger_order``, ``missed_by_plc`` for the outage);
6. ``order``: the edge runs a model slower than the line (qc.faults.rig.SLOW_MODEL) with a
   200 ms deadline and an inspection queue of 1, so parts fail safe as late and queue-full, and
   freezes for a second (SIGSTOP), so parts pass unread (missed-trigger) and are read after their
   deadline. The PLC must read every part's result once, in trigger order, and under each number
   the action the journal says the edge decided for that part (``actions_mismatched`` 0);
   ``fail_safes`` counts each kind, and the scenario fails if one did not happen.

"Mid-stream" is after a third of the reviews are stored, never after a fixed time. Before
the broker or the edge is killed the station is paused (SIGSTOP) until 40 durable reviews
wait for it, so the crash finds reviews on their way (at the line's rate it keeps up).

Counting (after recovery and after the edge has finished its parts and drained):

- ``sent``: distinct review ids the edge made durable (journal "r" lines: written once the
  review is in the outbox, from where the edge must deliver it), plus stored reviews the
  journal named at actuation whose "r" line a SIGKILL cut off. Survives a SIGKILL of the edge.
- ``stored``: distinct review ids in the station's database.
- ``lost``: sent reviews not stored.
- ``duplicates``: review rows beyond one per id, plus parts with more than one stored review,
  plus parts with more than one decision in the journal.
- ``recovery_s``: from the restart (or the station's return) to the moment every review
  sent so far (journal at that moment) is stored.
- ``parts``: parts decided (journal "d" lines); ``parts_double_decided``: parts decided twice.
- ``reviews_unwritten``: reviews named at actuation that never reached the outbox (the
  frame was still in the edge's memory when it was killed, or the review queue was full);
  the part itself was decided (HOLD). Reported, not counted as lost: it was never sent.
- ``parts_without_review``: parts decided with no review owed (no frame: a camera fault).
- ``unknown``: stored reviews the journal never named at actuation (must be 0).
"""
from qc.faults.rig import Counts, FaultRig, RigOptions
from qc.faults.scenarios import SCENARIOS, ScenarioResult, run_scenario

__all__ = ["Counts", "FaultRig", "RigOptions", "SCENARIOS", "ScenarioResult", "run_scenario"]
