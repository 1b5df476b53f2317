"""The learning-loop simulation behind ``qc bench loop``: data preparation and one model chain.

Preparation (``prepare``): a labelled folder is loaded at model input size, exact
duplicates dropped and near-duplicates grouped (``ImageSet.dedup``, training.dedup);
then whole groups are assigned to a small labelled *seed* set, a *stream* that plays
the production line, and a *test* set. Each group also gets a fixed *role* for the
day it is labelled -- train, calib (threshold calibration) or gate (the growing
golden set the promotion gate judges on) -- so a labelled image never trains one
round's model and calibrates or gates another's. A seeded share of the stream's and
the test set's good parts gets one lighting artefact painted on
(``hardware.synthetic.add_artefact``), the same image in every round.

A ``Chain`` is one line's history of models: the seed model, then one retrain per
round. Each model is built by ``training.pipeline.build_model`` (train, ONNX export
with parity, calibration), staged as a model directory and loaded by the edge's own
``edge.detector.Detector``; decisions come from ``edge.decision.decide``; candidates
pass ``training.gate`` before they replace the current model.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.decision import HOLD, PASS, REJECT, decide
from training.calibrate import calibrate
from training.data import ImageSet, Sample
from training.errors import DatasetError
from training.metrics import accuracy, auroc

ROLES = ("train", "calib", "gate")


@dataclass(frozen=True)
class Item:
    """One part of the simulated line: its model-size image, true label, group and labelling role."""

    image: np.ndarray
    label: int  # 1 = defect (what the oracle rules)
    group: int
    role: str  # train | calib | gate, used once the part is labelled
    artefact: str = ""  # the injected lighting artefact kind ("" for none)
    sample: Sample | None = None
    weight: float = 1.0  # line parts this item stands for once labelled (training.data.Sample)


@dataclass(frozen=True)
class Prepared:
    seed: list[Item]
    stream: list[Item]
    test: list[Item]
    hw: tuple[int, int]
    stats: dict


@dataclass(frozen=True)
class SimConfig:
    seed_size: int = 200
    test_share: float = 0.2
    artefact_share: float = 0.3
    calib_share: float = 0.2  # of labelled groups: calibrate thresholds on these
    gate_share: float = 0.1  # of labelled groups: the gate's golden set
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_share", "artefact_share", "calib_share", "gate_share"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise DatasetError(f"{name.replace('_', '-')} must be in [0, 1), got {v}")
        if self.calib_share <= 0 or self.calib_share + self.gate_share >= 0.8:
            raise DatasetError(f"calib share {self.calib_share} and gate share {self.gate_share} leave too little "
                               f"to train on (calib > 0, calib + gate < 0.8)")
        if self.seed_size < 20:
            raise DatasetError(f"seed-size must be >= 20 (both classes in train, calib and gate), got {self.seed_size}")


# ---------------------------------------------------------------------- preparation
def prepare(data: ImageSet, cfg: SimConfig) -> Prepared:
    """Group, split into seed / stream / test by whole groups, assign roles, inject artefacts."""
    # The folder's own train/test filing is ignored: the casting set's test split holds copies of
    # train images, so groups (not folders) decide where an image goes.
    clean = ImageSet([Sample(s.image, s.label, {k: v for k, v in s.meta.items() if k != "split"})
                      for s in data.samples], data.hw, data.stats).dedup()
    members: dict[int, list[Sample]] = {}
    for s in clean.samples:
        members.setdefault(s.meta["group"], []).append(s)
    total = len(clean)
    if cfg.seed_size + 2 > total * (1 - cfg.test_share) / 2:
        raise DatasetError(f"seed-size {cfg.seed_size} is too large for {total} distinct images "
                           f"(it must be under half of what the test set leaves)")
    rng = np.random.default_rng([cfg.seed, 0x5917])
    test_g = _draw_groups(members, cfg.test_share * total, rng, set())
    seed_g = _draw_groups(members, cfg.seed_size, rng, test_g)
    stream_g = set(members) - test_g - seed_g
    roles = _roles(members, seed_g, stream_g, cfg, rng)

    def items(groups: set[int], inject: bool) -> list[Item]:
        out = []
        for g in sorted(groups):
            for s in members[g]:
                out.append(Item(s.image, s.label, g, roles.get(g, "test"), sample=s))
        order = rng.permutation(len(out))  # the line's order: copies of a part need not follow each other
        out = [out[i] for i in order]
        return [inject_artefact(it, cfg.seed, cfg.artefact_share) for it in out] if inject else out

    seed, stream, test = items(seed_g, False), items(stream_g, True), items(test_g, True)
    for name, part in (("seed", seed), ("test", test), ("stream", stream)):
        if len({it.label for it in part}) < 2:
            raise DatasetError(f"the {name} set has only one class ({len(part)} images); the data needs both "
                               f"ok/ and def/ images")
    for role in ROLES:
        if len({it.label for it in seed if it.role == role}) < 2:
            raise DatasetError(f"the seed set of {len(seed)} images has too few groups to give the {role} role both "
                               f"classes; raise --seed-size")
    stats = {**clean.stats, "seed": len(seed), "stream": len(stream), "test": len(test),
             "groups": {"seed": len(seed_g), "stream": len(stream_g), "test": len(test_g)},
             "artefacts": {"stream": sum(1 for it in stream if it.artefact),
                           "test": sum(1 for it in test if it.artefact)}}
    return Prepared(seed, stream, test, clean.hw, stats)


def _draw_groups(members: dict[int, list[Sample]], want: float, rng: np.random.Generator,
                 taken: set[int]) -> set[int]:
    """Whole groups totalling about ``want`` images, stratified by label; groups too big to fit are skipped.

    Chained near-duplicate groups can hold hundreds of images; skipping those keeps a
    200-image seed set from becoming one group of 800 (they stay in the stream).
    """
    free = [g for g in members if g not in taken]
    n_all = sum(len(members[g]) for g in free) or 1
    chosen: set[int] = set()
    for label in (0, 1):
        # By majority: chained groups mix labels, and "any defect" would file mostly-good groups as defective.
        pool = [g for g in free if _majority(members[g]) == label]
        share = sum(len(members[g]) for g in pool) / n_all
        quota, got = want * share, 0
        for i in rng.permutation(len(pool)):
            g = pool[i]
            size = len(members[g])
            if got + size <= quota + 0.5:
                chosen.add(g)
                got += size
            if got >= quota - 0.5:
                break
    return chosen


def _majority(samples: list[Sample]) -> int:
    return int(2 * sum(s.label for s in samples) >= len(samples))


def _roles(members, seed_g: set[int], stream_g: set[int], cfg: SimConfig, rng) -> dict[int, str]:
    roles: dict[int, str] = {}
    cuts = (cfg.calib_share, cfg.calib_share + cfg.gate_share)
    # The seed set is small: its roles are stratified so each role holds both classes.
    for label in (0, 1):
        pool = sorted(g for g in seed_g if _majority(members[g]) == label)
        pool = [pool[i] for i in rng.permutation(len(pool))]
        n = len(pool)
        n_cal, n_gate = max(1, round(cuts[0] * n)), max(1, round(cfg.gate_share * n))
        for k, g in enumerate(pool):
            roles[g] = "calib" if k < n_cal else "gate" if k < n_cal + n_gate else "train"
    # The stream's calib and gate groups are drawn as the test set is (whole groups by image quota and
    # label, chains too big to fit skipped), so thresholds are fitted and gated on parts like the ones they
    # are judged on: a chain of hundreds of near-copies of a few photos in calib would make its lowest
    # defect a few photos' score. The chains stay in train, where near-copies are augmentation.
    n_stream = sum(len(members[g]) for g in stream_g)
    outside = set(members) - stream_g
    calib_g = _draw_groups(members, cfg.calib_share * n_stream, rng, outside)
    gate_g = _draw_groups(members, cfg.gate_share * n_stream, rng, outside | calib_g)
    for g in stream_g:
        roles[g] = "calib" if g in calib_g else "gate" if g in gate_g else "train"
    return roles


def inject_artefact(item: Item, seed: int, share: float) -> Item:
    """The item with one lighting artefact painted on if it is a good part drawn for one (seeded by its content)."""
    from hardware.synthetic import ARTEFACT_KINDS, add_artefact

    if item.label != 0 or share <= 0:
        return item
    # Seeded by the run seed and the image's content hash: the same image gets the same
    # artefact in every round and every run, whatever order the parts arrive in.
    sha = item.sample.meta.get("sha", "") if item.sample is not None else ""
    rng = np.random.default_rng([seed, 0xA27E, int(sha[:12] or "0", 16)])
    if rng.random() >= share:
        return item
    kind = ARTEFACT_KINDS[int(rng.integers(len(ARTEFACT_KINDS)))]
    return replace(item, image=add_artefact(item.image, kind, rng), artefact=kind)


# ---------------------------------------------------------------------- one model chain
@dataclass(frozen=True)
class Figures:
    """A model's figures on the test set at its calibrated thresholds (definitions: training.loop_bench)."""

    ai_accuracy: float
    hitl_accuracy: float
    review_rate: float
    escape_rate: float
    false_reject_rate: float
    artefact_false_reject_rate: float
    auroc: float


def score_items(detector, items: list[Item]) -> np.ndarray:
    return np.array([detector.score(it.image) for it in items], dtype=np.float64)


def figures_on(scores: np.ndarray, items: list[Item], pass_below: float, reject_above: float) -> Figures:
    y = np.array([it.label for it in items])
    actions = np.array([decide(float(s), pass_below, reject_above).action for s in scores])
    held, rejected, passed = actions == HOLD, actions == REJECT, actions == PASS
    # The reviewer rules every held part correctly; the rest keep the line's decision.
    hitl = np.where(held, y, rejected.astype(int))
    art = np.array([bool(it.artefact) for it in items]) & (y == 0)

    def share(mask, of):
        return float(mask[of].mean()) if of.any() else float("nan")

    return Figures(ai_accuracy=accuracy(scores, y), hitl_accuracy=float(np.mean(hitl == y)),
                   review_rate=float(held.mean()), escape_rate=share(passed, y == 1),
                   false_reject_rate=share(rejected, y == 0), artefact_false_reject_rate=share(rejected, art),
                   auroc=auroc(scores, y))


class Chain:
    """Models trained one after another on a growing label set, each gated against the current one."""

    def __init__(self, name: str, hw: tuple[int, int], workdir: Path, train_cfg, budgets, gate_rule, log=None,
                 epochs_for=None):
        from training.golden import GoldenSet

        self.name, self.hw = name, hw
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.train_cfg, self.budgets, self.gate_rule = train_cfg, budgets, gate_rule
        self.labelled: list[Item] = []
        self.golden = GoldenSet(self.dir / "golden", [], hw, "simulation")
        self.current: Path | None = None
        self.detector = None
        self.version = 0
        self.calib_scores: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.log = log  # where the trainer's epoch lines go (None: nowhere)
        self.epochs_for = epochs_for  # images shown per epoch -> epochs (None: train_cfg's epochs)

    def add_labels(self, items: list[Item]) -> None:
        self.labelled.extend(items)
        gate_items = [it for it in items if it.role == "gate"]
        if gate_items:
            self.golden.add(ImageSet([_sample(it) for it in gate_items], self.hw))

    def retrain(self) -> dict:
        """Build a candidate from the labels; promote it if there is no model yet or the gate says so."""
        from models.manifest import MANIFEST_NAME, write_manifest
        from training.gate import gate
        from training.pipeline import build_model

        train_s = [_sample(it, "train") for it in self.labelled if it.role == "train"]
        calib_s = [_sample(it, "val") for it in self.labelled if it.role == "calib"]
        for what, part in (("train", train_s), ("calib", calib_s)):
            if len({s.label for s in part}) < 2:
                raise DatasetError(f"{self.name}: the labelled {what} images hold one class only ({len(part)})")
        self.version += 1
        version = f"0.{self.version}.0"
        train_cfg = self.train_cfg
        if self.epochs_for is not None:
            shown = int(ImageSet(train_s, self.hw).repeats().sum())
            train_cfg = replace(train_cfg, epochs=self.epochs_for(shown))
        result = build_model(ImageSet(train_s + calib_s, self.hw), version, train_cfg, self.budgets,
                             val=0.0, golden=0.0, log=self.log or io.StringIO())
        where = self.dir / version
        where.mkdir()
        (where / result.manifest.file).write_bytes(result.model_bytes)
        write_manifest(where / MANIFEST_NAME, result.manifest)
        info = {"version": version, "train_images": len(train_s), "calib_images": len(calib_s),
                "epochs": train_cfg.epochs, "train_seconds": round(result.training.seconds, 1)}
        if self.current is None:
            promoted, reason = True, "first model"
        else:
            # The gate set grows from a few dozen defects: one escape more is within its noise.
            defects = max(1, self.golden.counts().get("def", 0))
            rule = replace(self.gate_rule, escape_tolerance=max(self.gate_rule.escape_tolerance, 1.0 / defects))
            decision = gate(where, self.current, self.golden, rule)
            promoted, reason = decision.promoted, decision.reason
        info.update(promoted=promoted, gate=reason, golden_images=len(self.golden))
        if promoted:
            self.current = where
            self.detector = self.load(info["version"])
            calib = [it for it in self.labelled if it.role == "calib"]
            self.calib_scores = (score_items(self.detector, calib), np.array([it.label for it in calib]),
                                 np.array([it.weight for it in calib]))
        return info

    def load(self, version: str):  # noqa: ANN201 (edge.detector.Detector)
        """One of this chain's models, promoted or not, as the edge loads it (the images are its whole region)."""
        from edge.detector import Detector

        h, w = self.hw
        return Detector.load(self.dir / version, roi=(0, 0, w, h), warmup=1)

    def adopt(self, other: Chain) -> None:
        """Start from ``other``'s current model (the same seed labels train the same seed model)."""
        self.current, self.detector, self.calib_scores = other.current, other.detector, other.calib_scores
        self.version = other.version

    def band_for_labelling(self, review_share: float, escape_budget: float, false_reject_budget: float):
        """Thresholds for the line while the loop learns: the current model recalibrated to a wider band."""
        s, y, w = self.calib_scores
        # The band around the calibrated one, fitted to the round's share by ``fit_band``: no review spent by cost here.
        return calibrate(s, y, escape_budget, review_share, false_reject_budget, weights=w, review_cost=None)


def fit_band(pass_below: float, reject_above: float, scores: np.ndarray, share: float) -> tuple[float, float]:
    """Move [pass_below, reject_above) until it holds ``share`` of ``scores``, most uncertain parts first.

    The calibrated band on a few labelled images rarely holds the share the line can
    review while the loop learns: too narrow once the model is good, too wide while it is
    new (and reviewing more than planned spends labels the loop does not have). A narrow
    band grows one score at a time on the side whose next score is nearer in logit, so it
    stays an interval around the calibrated one and takes the parts the model is least
    sure of; a wide one sheds the score farthest in logit from its middle. Only scores are
    used (no labels), as an edge could from its own recent parts.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n, want = len(s), int(round(share * len(s)))
    lo, hi = int(np.searchsorted(s, pass_below, "left")), int(np.searchsorted(s, reject_above, "left"))
    lo0, hi0 = lo, hi
    while hi - lo < want and (lo > 0 or hi < n):
        down = _logit(pass_below) - _logit(s[lo - 1]) if lo > 0 else np.inf
        up = _logit(s[hi]) - _logit(reject_above) if hi < n else np.inf
        if down <= up:
            lo -= 1
        else:
            hi += 1
    middle = (_logit(pass_below) + _logit(reject_above)) / 2
    while hi - lo > want:
        if middle - _logit(s[lo]) >= _logit(s[hi - 1]) - middle:
            lo += 1
        else:
            hi -= 1
    # Thresholds halfway between neighbouring scores, as calibration places them.
    if lo != lo0:
        pass_below = float((s[lo - 1] + s[lo]) / 2) if lo > 0 else 0.0
    if hi != hi0:
        reject_above = float((s[hi - 1] + s[hi]) / 2) if hi < n else 1.0
    return pass_below, max(pass_below, reject_above)


def best_band(scores: np.ndarray, labels: np.ndarray, share: float,
              max_escape_rate: float = 1.0) -> tuple[float, float]:
    """The band holding at most ``share`` of the parts that leaves the fewest wrong line decisions.

    Chosen with hindsight, from the labels of the very parts it is applied to: not a
    calibration but the bound on what any thresholds could do with these scores (the
    benchmark's ceiling report). Wrong decisions are escapes (defects PASSed) plus false
    rejects; ties go to fewer escapes, then to the narrower band. Only bands that pass at
    most ``max_escape_rate`` of the defects count; one always does (passing nothing).
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    ss, yy = s[order], np.asarray(labels, dtype=np.int64)[order]
    n = len(ss)
    max_escapes = max_escape_rate * int(yy.sum()) + 1e-9
    below_def = np.concatenate([[0], np.cumsum(yy)])  # defects under cut i (the i lowest scores)
    from_good = int((1 - yy).sum()) - np.concatenate([[0], np.cumsum(1 - yy)])  # good parts at or above cut i
    # A cut between two equal scores cannot be drawn with a threshold.
    cuttable = np.ones(n + 1, dtype=bool)
    cuttable[1:n] = ss[1:] > ss[:-1]
    best: tuple[int, int, int, int] | None = None  # (errors, escapes, width, lo)
    for width in range(int(share * n) + 1):
        lo = np.arange(n - width + 1)
        ok = cuttable[lo] & cuttable[lo + width] & (below_def[lo] <= max_escapes)
        if not ok.any():
            continue
        lo = lo[ok]
        errors, escapes = below_def[lo] + from_good[lo + width], below_def[lo]
        i = int(np.lexsort((escapes, errors))[0])
        key = (int(errors[i]), int(escapes[i]), width, int(lo[i]))
        if best is None or key[:3] < best[:3]:
            best = key
    _, _, width, lo = best

    def cut(i: int) -> float:
        if i == 0:
            return float(ss[0]) if n else 0.0
        return float((ss[i - 1] + ss[i]) / 2) if i < n else float(np.nextafter(ss[-1], np.inf))

    return cut(lo), cut(lo + width)


def _logit(x: float) -> float:
    x = float(np.clip(x, 1e-7, 1 - 1e-7))
    return float(np.log(x / (1 - x)))


def _sample(it: Item, split: str | None = None) -> Sample:
    meta = dict(it.sample.meta) if it.sample is not None else {}
    meta.update(group=it.group, artefacts=[it.artefact] if it.artefact else [], weight=it.weight)
    if it.artefact and it.label == 0:
        meta["hard_negative"] = True  # the reviewer's "not a defect: glare", as the station exports it
    if split:
        meta["split"] = split
    else:
        meta.pop("split", None)
    if it.artefact:
        meta.pop("sha", None)  # the painted image is not the file's image
        meta.pop("dhash", None)
    return Sample(it.image, it.label, meta)


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="qc-loop-")
