"""The demo's figures per model version: what the line really did, and what the audits estimate.

The simulated line knows the truth of every part (``TruthBook``), so the demo can show what a
plant can only estimate: per model version, the share of parts held for review, the share of
good parts rejected and the share of defects passed. Beside them stand the station's audit
estimates, the figures a real plant would read (training nothing, the audits are blind random
samples of the confident decisions).
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from edge.decision import Decision
from qc.demo_review import TruthBook

#: How parts decided before any model could score them (fail-safe) are listed.
NO_MODEL = "no model (fail-safe)"


@dataclass(frozen=True)
class VersionFigures:
    model: str
    parts: int
    good: int
    defects: int
    held: int
    false_rejects: int
    escapes: int

    @property
    def review_share(self) -> float | None:
        return self.held / self.parts if self.parts else None

    @property
    def false_reject_rate(self) -> float | None:
        return self.false_rejects / self.good if self.good else None

    @property
    def escape_rate(self) -> float | None:
        return self.escapes / self.defects if self.defects else None

    def words(self, audits: dict | None = None) -> str:
        text = (f"{self.model}: {self.parts} parts, review {_pct(self.review_share)}, false rejects "
                f"{_pct(self.false_reject_rate)} of {self.good} good parts, escapes {_pct(self.escape_rate)} of "
                f"{self.defects} defects")
        if audits:
            text += (f" (audits: {audits.get('audited_rejects', 0)} REJECTs checked, false rejects "
                     f"{_pct(audits.get('false_reject_rate'))} of parts; {audits.get('audited_passes', 0)} PASSes "
                     f"checked, escapes {_pct(audits.get('escape_rate'), 2)} of parts)")
        return text

    def short(self) -> str:
        return (f"{self.model} rev {_pct(self.review_share, 0)} FR {_pct(self.false_reject_rate)} "
                f"esc {_pct(self.escape_rate)}")


class LineFigures:
    """A pipeline decision listener that counts, per model version, the truth of what it decided."""

    def __init__(self, book: TruthBook):
        self.book = book
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}
        self._order: list[str] = []

    def on_decision(self, decision: Decision) -> None:
        truth = self.book.truth(decision.part_id)
        model = decision.model or NO_MODEL
        with self._lock:
            if model not in self._counts:
                self._counts[model] = Counter()
                self._order.append(model)
            c = self._counts[model]
            c["parts"] += 1
            c["held"] += decision.action == "HOLD"
            if truth is None:
                return
            if truth.is_defect:
                c["defects"] += 1
                c["escapes"] += decision.action == "PASS"
            else:
                c["good"] += 1
                c["false_rejects"] += decision.action == "REJECT"

    def versions(self) -> list[VersionFigures]:
        """In the order the line first ran them."""
        with self._lock:
            return [VersionFigures(m, **{k: self._counts[m][k] for k in
                                         ("parts", "good", "defects", "held", "false_rejects", "escapes")})
                    for m in self._order]

    def parts_of(self, model: str) -> int:
        with self._lock:
            return self._counts.get(model, Counter())["parts"]


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"
