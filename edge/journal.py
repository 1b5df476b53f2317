"""The decisions journal: an append-only record of every part's decision and every stored review.

Optional (``[edge].journal = true``); the file is ``<data_dir>/decisions.jsonl``, one JSON
object per line:

    {"k": "d", "part": "cam1-...-0000042", "n": 42, "action": "HOLD", "review": "<uuid>" | null,
     "why": "late", "t": 1.7e9}
        written at actuation: the part's one decision, its place in trigger order ("n", the number
        the PLC is given with its result; absent for a part the pipeline did not trigger), the id
        its review will carry, and why it failed safe ("why": late, queue-full, missed-trigger, ...;
        absent when it was decided by the model)
    {"k": "r", "id": "<uuid>", "part": "cam1-...-0000042"}
        written once that review is durable in the outbox (from then on the outbox owns it)

It answers, after any crash of the edge process, which parts were decided and which
reviews the edge created, so delivery can be audited end to end (``qc bench faults``).
Each line is one ``write(2)`` on a file opened with O_APPEND: a killed process leaves
whole lines behind (the kernel keeps them); the last line may be torn only by a power
cut, and a torn line is skipped when reading. There is no fsync per line, so it costs
microseconds per part; the journal is an audit trail, not part of the delivery promise.
It is not rotated: enable it for audits and tests, not for months of production.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import EdgeError

FILE_NAME = "decisions.jsonl"


class DecisionJournal:
    """Appends decision and review lines; thread-safe (the inspect and review threads both write)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EdgeError(f"cannot open the decisions journal {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def decision(
        self, part_id: str, action: str, review_id: str | None, number: int | None = None, fail_safe: str = ""
    ) -> None:
        line: dict = {"k": "d", "part": part_id}
        if number is not None:
            line["n"] = number
        line.update(action=action, review=review_id)
        if fail_safe:
            line["why"] = fail_safe
        line["t"] = round(time.time(), 3)
        self._append(line)

    def review(self, review_id: str, part_id: str) -> None:
        self._append({"k": "r", "id": review_id, "part": part_id})

    def _append(self, obj: dict) -> None:
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                return  # closed during shutdown: the stopping service no longer records
            try:
                os.write(self._fd, line)
            except OSError as exc:
                raise EdgeError(f"cannot append to the decisions journal {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass(frozen=True)
class JournalSummary:
    """What a journal says: decisions per part, reviews promised at actuation, reviews made durable."""

    decisions: Counter = field(default_factory=Counter)  # part id -> number of decisions
    actions: Counter = field(default_factory=Counter)  # action -> parts
    promised: frozenset = frozenset()  # review ids named at actuation
    stored: frozenset = frozenset()  # review ids written to the outbox
    torn_lines: int = 0
    fail_safes: Counter = field(default_factory=Counter)  # why -> parts that failed safe for it
    action_by_number: dict = field(default_factory=dict)  # place in trigger order -> action

    @property
    def parts(self) -> int:
        return len(self.decisions)

    @property
    def double_decided(self) -> list[str]:
        return sorted(p for p, n in self.decisions.items() if n > 1)


def read_journal(path: str | Path) -> JournalSummary:
    """Summarise a journal file (missing file: empty summary)."""
    decisions: Counter = Counter()
    actions: Counter = Counter()
    promised: set[str] = set()
    stored: set[str] = set()
    fail_safes: Counter = Counter()
    by_number: dict[int, str] = {}
    torn = 0
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return JournalSummary()
    except OSError as exc:
        raise EdgeError(f"cannot read the decisions journal {path}: {exc}") from exc
    for line in raw.splitlines():
        try:
            obj = json.loads(line)
            kind = obj["k"]
            if kind == "d":
                decisions[obj["part"]] += 1
                actions[obj["action"]] += 1
                if obj.get("review"):
                    promised.add(obj["review"])
                if obj.get("why"):
                    fail_safes[obj["why"]] += 1
                if "n" in obj:
                    by_number[int(obj["n"])] = obj["action"]
            elif kind == "r":
                stored.add(obj["id"])
        except (ValueError, KeyError, TypeError):
            torn += 1  # a power cut mid-line; whole lines before it still count
    return JournalSummary(decisions, actions, frozenset(promised), frozenset(stored), torn, fail_safes, by_number)
