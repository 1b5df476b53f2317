"""``qc bench loop``: the learning loop simulated on a labelled image folder, with an oracle reviewer.

The folder (``DIR/{ok,def}/*`` or ``DIR/{train,test}/{ok,def}/*``) is grouped into
near-duplicates and split by whole groups into a labelled seed set, a stream that
plays the production line and a test set (training.loop_sim). A share of the good
parts in the stream and the test set gets an injected lighting artefact.

Round 0 trains on the seed set. Round r (1..rounds) runs the r-th slice of the
stream through the current model and ``edge.decision.decide`` with thresholds
calibrated for a review band of about ``label_share`` of the parts (one share per
round, the last repeating: the loop reviews most while its model is new); the uncertain
parts and a random ``audit_rate`` of the confident ones go to the oracle, whose
verdicts join the labels; a candidate is trained on all labels, calibrated to the
production budgets and gated against the current model on the growing gate set.
The random baseline labels as many parts of each slice, drawn at random, and is
trained and gated the same way.

Labelled parts are not a uniform sample of the line: every part of the band is
reviewed, only ``audit_rate`` of the confident ones. Each labelled part therefore
carries the number of line parts it stands for (1, 1/audit_rate; a seed image stands
for slice/seed parts), and calibration and the gate count by it
(training.calibrate), so the review and false-reject budgets hold for the line, not
for the over-sampled hard cases. The model is a wider net than the edge's default
(``widths``) whose released graph scores the mean of the 8 rotations/flips of a part.

Figures on the test set, for the current model at its production thresholds:

- ``labels``: labelled images so far (seed set plus every oracle verdict);
- ``ai_accuracy``: the model alone, defect when score >= 0.5;
- ``review_rate``: share of test parts the decision sends to HOLD (review);
- ``hitl_accuracy``: accuracy when held parts take the oracle's (true) label and the
  rest keep the line's PASS/REJECT;
- ``escape_rate``: defects PASSed / all test defects;
- ``false_reject_rate``: good parts REJECTed / all good test parts;
- ``artefact_false_reject_rate``: the same on the good test parts with an injected artefact;
- ``auroc``: the model's ranking of the test parts, whatever its thresholds.

Nothing here is tuned on the test set: thresholds come from the labelled calib
images, promotion from the labelled gate images. The one exception is labelled as
such: ``--ceiling SHARE`` also trains a model on every seed and stream part, labelled,
and reports it both at its calibrated thresholds and at the band of at most SHARE of
the test parts that errs least on the test labels (``best_band``) -- the bound on what
any thresholds, and so any number of labels, could do with this detector.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from training.defaults import DEFECTNET_WIDTHS, EMA, VIEWS
from training.errors import DatasetError, TrainError
from training.family import DEFAULT_SIZES
from training.loop_sim import (
    Chain,
    Figures,
    Item,
    Prepared,
    SimConfig,
    best_band,
    figures_on,
    fit_band,
    prepare,
    score_items,
    workdir,
)

FIGURES = ("ai_accuracy", "hitl_accuracy", "review_rate", "escape_rate", "false_reject_rate",
           "artefact_false_reject_rate", "auroc")


#: Per family, the most epochs the benchmark trains unless told otherwise (input side, views
#: scored and weight averaging are the trainer's defaults: training.family, training.defaults).
BENCH_EPOCHS = {"defectnet": 40, "lite0": 20, "lite2": 20}
#: Per family, the image showings one round's model gets (hard negatives' repeats included): a growing
#: label set trains for fewer epochs, between a third of BENCH_EPOCHS and all of them, so each round
#: costs about the same and the last rounds do not dominate the run. The ceiling trains every epoch.
BENCH_SHOWINGS = {"defectnet": 32_000, "lite0": 16_000, "lite2": 16_000}


@dataclass(frozen=True)
class LoopConfig:
    data: Path
    sim: SimConfig = field(default_factory=SimConfig)
    rounds: int = 3  # 0: the ceiling only
    families: tuple[str, ...] = ("defectnet",)  # the rounds use the first; --ceiling trains one model per family
    size: int | None = None  # model input side; None: each family's default (training.family.DEFAULT_SIZES)
    epochs: int | None = None  # None: each family's BENCH_EPOCHS
    widths: tuple[int, ...] = DEFECTNET_WIDTHS  # defectnet conv widths (training.net.DefectNet)
    blocks: int = 0  # lite* blocks kept (training.lite.LiteNet; 0: the whole backbone)
    freeze: int = 0  # lite* blocks kept at their ImageNet weights
    dihedral_mean: bool | None = None  # score = mean over the 8 rotations/flips; None: the family's default views
    label_share: tuple[float, ...] = (0.45, 0.15)  # review band while learning, share of each slice, per round
    audit_rate: tuple[float, ...] = (0.03,)  # per round, the last repeating: random audits of the confident parts
    # (weight 1/rate), the calibration's view of them and, while the model is new, an unbiased share of the labels
    escape_budget: float = 0.0025
    review_budget: float = 0.03
    false_reject_budget: float = 0.01
    augment_artefacts: bool = False
    ceiling: float | None = None  # also train on every seed and stream part; best band of this share on test
    scores: Path | None = None  # write each reported model's calibration and test scores here (.npz), for study

    def __post_init__(self) -> None:
        from training.family import FAMILIES

        if self.rounds < 0 or (self.rounds == 0 and self.ceiling is None):
            raise DatasetError(f"rounds must be >= 1 (or 0 with --ceiling: the ceiling only), got {self.rounds}")
        if not self.families or any(f not in FAMILIES for f in self.families):
            raise TrainError(f"family must be one or more of {', '.join(FAMILIES)}, got {','.join(self.families)}")
        if self.size is not None and self.size < 32:
            raise TrainError(f"size must be >= 32, got {self.size}")
        if self.epochs is not None and self.epochs < 1:
            raise TrainError(f"epochs must be >= 1, got {self.epochs}")
        shares = (*self.label_share, *self.audit_rate)
        if not self.label_share or not self.audit_rate or not all(0 < v < 1 for v in shares):
            raise DatasetError(f"label-share ({','.join(map(str, self.label_share))}) and audit-rate "
                               f"({','.join(map(str, self.audit_rate))}) must be shares in (0, 1)")
        if self.ceiling is not None and not 0 <= self.ceiling < 1:
            raise DatasetError(f"ceiling review share must be in [0, 1), got {self.ceiling}")

    def share_for_round(self, r: int) -> float:
        """The labelling band of round ``r`` (1-based) as a share of its slice."""
        return self.label_share[min(r, len(self.label_share)) - 1]

    def audit_for_round(self, r: int) -> float:
        """The audit rate of round ``r`` (1-based): the share of its confident parts also labelled."""
        return self.audit_rate[min(r, len(self.audit_rate)) - 1]

    def size_of(self, family: str) -> int:
        return self.size or DEFAULT_SIZES[family]

    def epochs_rule(self, family: str):  # noqa: ANN201 (Callable[[int], int] | None)
        """Epochs for a model shown ``n`` images per epoch (None with explicit ``epochs``: always those)."""
        if self.epochs is not None:
            return None
        most = BENCH_EPOCHS[family]
        return lambda n: int(min(most, max(math.ceil(most / 3), round(BENCH_SHOWINGS[family] / max(n, 1)))))

    def train_config(self, family: str):  # noqa: ANN201 (training.train.TrainConfig)
        """How the benchmark trains a model of ``family``."""
        from training.augment import AugmentConfig
        from training.family import NetSpec
        from training.train import TrainConfig

        aug = AugmentConfig() if self.augment_artefacts else AugmentConfig(artefact_good=0.0, artefact_defect=0.0)
        net = NetSpec(family, widths=self.widths, blocks=self.blocks)
        views = VIEWS[family] if self.dihedral_mean is None else (8 if self.dihedral_mean else 1)
        return TrainConfig(epochs=self.epochs or BENCH_EPOCHS[family], seed=self.sim.seed,
                           progress=False, augment=aug, net=net, freeze=self.freeze if net.pretrained_family else 0,
                           dihedral_mean=views == 8, ema=EMA[family])


def load_data(data: Path, hw: tuple[int, int]):  # noqa: ANN201 (training.data.ImageSet)
    """``elpv`` (the installed solar-cell set, training.elpv) or a labelled folder."""
    from training.data import ImageSet

    if str(data) == "elpv":
        from training import elpv

        return elpv.load(hw)
    check_layout(data)
    return ImageSet.from_folders(data, hw)


def check_layout(root: Path) -> None:
    """A clear error unless ``root`` holds ok/ and def/ (directly or under train/ or test/), or names ``elpv``."""
    if str(root) == "elpv":
        from training import elpv

        elpv.data_root()
        return
    if not root.is_dir():
        raise DatasetError(f"--data {root}: no such folder (expected DIR/ok and DIR/def, or DIR/train/ok ...)")
    for base in (root, root / "train", root / "test"):
        if (base / "ok").is_dir() and (base / "def").is_dir():
            return
    raise DatasetError(f"--data {root}: expected sub-folders ok/ and def/ (or train/ok, train/def, test/ok, "
                       f"test/def); found {sorted(p.name for p in root.iterdir() if p.is_dir()) or 'none'}")


class Progress:
    def __init__(self, quiet: bool):
        self.quiet, self.t0 = quiet, time.perf_counter()

    def __call__(self, round_no: int | str, phase: str) -> None:
        if not self.quiet:
            where = f"round {round_no}" if isinstance(round_no, int) else round_no
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {where}: {phase}", file=sys.stderr, flush=True)

    def trainer_log(self, where: str):  # noqa: ANN201 (a file-like object, or None when quiet)
        """A stream for the trainer's own lines (its epochs), shown as progress of ``where``."""
        return None if self.quiet else _Lines(lambda line: self(where, line))


class _Lines:
    """A minimal text stream that hands each complete line to ``emit``."""

    def __init__(self, emit):  # noqa: ANN001
        self.emit, self.buf = emit, ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if line.strip() and line.startswith(("epoch", "training")):
                self.emit(line.strip())
        return len(text)

    def flush(self) -> None:
        pass


def run(cfg: LoopConfig, progress: Progress | None = None, prepared: Prepared | None = None) -> dict:
    """The whole benchmark; returns the JSON document.

    ``prepared`` (tests) stands for the data at the first family's size. Every size is
    split the same way (the groups are hashed from the images as read), so all families
    meet the same test parts.
    """
    from training.gate import GateRule
    from training.pipeline import Budgets

    progress = progress or Progress(True)
    started = time.perf_counter()
    first = cfg.families[0]
    preps: dict[int, Prepared] = {cfg.size_of(first): prepared} if prepared is not None else {}

    def prepared_at(size: int) -> Prepared:
        if size not in preps:
            progress(0, f"loading {cfg.data} at {size}x{size}")
            preps[size] = prepare(load_data(cfg.data, (size, size)), cfg.sim)
            shas = [sorted(it.sample.meta.get("sha", "") for it in p.test) for p in preps.values()]
            if any(s != shas[0] for s in shas):
                raise DatasetError("the test parts differ between input sizes; the split must not depend on the size")
        return preps[size]

    rule = GateRule(escape_budget=cfg.escape_budget)
    budgets = Budgets(cfg.escape_budget, cfg.review_budget, cfg.false_reject_budget, review_cost=rule.review_weight)
    rows: dict[str, list[dict]] = {"uncertainty": [], "random": []}
    extra = {}
    with workdir() as tmp:
        if cfg.rounds:
            rows = _rounds(cfg, prepared_at(cfg.size_of(first)), Path(tmp), budgets, rule, progress)
        if cfg.ceiling is not None:
            extra["ceilings"] = []
            for family in cfg.families:
                size = cfg.size_of(family)
                chain = Chain(f"ceiling-{family}", (size, size), Path(tmp), cfg.train_config(family), budgets, rule,
                              log=progress.trainer_log(f"ceiling {family}"))  # every epoch: the bound, not a round
                extra["ceilings"].append(_ceiling(cfg, family, chain, prepared_at(size), progress))
    data = preps[cfg.size_of(first)] if cfg.size_of(first) in preps else next(iter(preps.values()))
    return {"rounds": rows["uncertainty"], "random_baseline": rows["random"], **extra,
            "data": {"path": str(cfg.data), **data.stats},
            "config": _config_dict(cfg), "seconds": round(time.perf_counter() - started, 1)}


def _rounds(cfg: LoopConfig, prepared: Prepared, tmp: Path, budgets, rule, progress: Progress) -> dict:  # noqa: ANN001
    """Round 0 on the seed set, then ``cfg.rounds`` rounds of uncertainty and random labelling."""
    family = cfg.families[0]
    size = cfg.size_of(family)
    hw, train_cfg = (size, size), cfg.train_config(family)
    progress(0, f"{family} at {size}x{size}: seed {len(prepared.seed)}, stream {len(prepared.stream)}, "
                f"test {len(prepared.test)} images")
    slices = np.array_split(np.arange(len(prepared.stream)), cfg.rounds)
    rng = np.random.default_rng([cfg.sim.seed, 0x100B])
    chains = {name: Chain(name, hw, tmp, train_cfg, budgets, rule, log=progress.trainer_log(name),
                          epochs_for=cfg.epochs_rule(family))
              for name in ("uncertainty", "random")}
    rows: dict[str, list[dict]] = {name: [] for name in chains}
    progress(0, "training on the seed set")
    # Each labelled part counts as the line parts it stands for (training.data.Sample): the seed is
    # a random sample standing for one slice, every part of the uncertain band is reviewed, and
    # only ``audit_rate`` of the confident ones.
    seed_items = weighted(prepared.seed, len(slices[0]) / len(prepared.seed))
    for chain in chains.values():
        chain.add_labels(seed_items)
    row = _report(0, chains["uncertainty"], chains["uncertainty"].retrain(), prepared, new=len(prepared.seed),
                  dump=cfg.scores)
    chains["random"].adopt(chains["uncertainty"])
    rows["uncertainty"].append(row)
    rows["random"].append(dict(row))
    progress(0, "seed model; test " + _brief(row))
    for r in range(1, cfg.rounds + 1):
        part = [prepared.stream[i] for i in slices[r - 1]]
        unc = chains["uncertainty"]
        share = cfg.share_for_round(r)
        band = unc.band_for_labelling(share, cfg.escape_budget, cfg.false_reject_budget)
        scores = score_items(unc.detector, part)
        pass_below, reject_above = fit_band(band.pass_below, band.reject_above, scores, share)
        progress(r, f"stream slice of {len(part)} parts through the line (band {pass_below:.4f} .. "
                    f"{reject_above:.4f})")
        picked, line = _run_line(part, scores, pass_below, reject_above, cfg.audit_for_round(r), rng)
        drawn = [part[i] for i in sorted(rng.choice(len(part), len(picked), replace=False))]
        chosen = {"uncertainty": picked, "random": weighted(drawn, len(part) / len(drawn))}
        for name, chain in chains.items():
            progress(r, f"{name}: {len(chosen[name])} verdicts, retraining on {len(chain.labelled) + len(chosen[name])} labels")
            chain.add_labels(chosen[name])
            info = chain.retrain()
            row = _report(r, chain, info, prepared, new=len(chosen[name]), dump=cfg.scores)
            if name == "uncertainty":
                row["line"] = line
            rows[name].append(row)
            progress(r, f"{name}: {'promoted' if info['promoted'] else 'kept the current model'}; test "
                        + _brief(row))
    return rows


def _ceiling(cfg: LoopConfig, family: str, chain: Chain, prepared: Prepared, progress: Progress) -> dict:
    """What labels alone could buy this detector: a model trained on every seed and stream part, labelled.

    It trains on every part of the train and gate roles (the gate is not needed for a first
    model) and calibrates on the calib role. Reported at its calibrated thresholds, and at two bands of at most ``cfg.ceiling`` of the
    test parts chosen with hindsight (``best_band``): the one that leaves the fewest wrong
    decisions, and the one that does so passing at most ``cfg.escape_budget`` of the defects. No
    thresholds calibrated on labelled parts do better on the test set, so targets these
    miss together are out of this detector's reach at any label count.
    """
    # Every part labelled, a uniform sample. The ceiling model is the chain's first and needs no gate, so
    # the gate role's parts train too: only the calib role is held back (for the thresholds).
    everything = [replace(it, role="train") if it.role == "gate" else it
                  for it in weighted(prepared.seed + prepared.stream, 1.0)]
    where = f"ceiling {family}"
    progress(where, f"training on all {len(everything)} seed and stream parts at {chain.hw[0]}x{chain.hw[1]}, "
                    f"every one labelled")
    chain.add_labels(everything)
    info = chain.retrain()
    scores = score_items(chain.detector, prepared.test)
    row = _report("ceiling", chain, info, prepared, new=len(everything), scores=scores, dump=cfg.scores)
    row.update(family=family, size=chain.hw[0], views=8 if chain.train_cfg.dihedral_mean else 1,
               infer_ms_1thread=chain.detector.manifest.metrics.get("infer_ms_1thread"))
    labels = np.array([it.label for it in prepared.test])
    for key, max_escape in (("best_band", 1.0), ("escape_budget_band", cfg.escape_budget)):
        pass_below, reject_above = best_band(scores, labels, cfg.ceiling, max_escape)
        fig = figures_on(scores, prepared.test, pass_below, reject_above)
        row[key] = {"review_share": cfg.ceiling, "pass_below": round(pass_below, 6),
                    "reject_above": round(reject_above, 6), **{k: _num(v) for k, v in asdict(fig).items()}}
    progress(where, f"test {_brief(row)}, auroc {row['auroc']}; with hindsight, fewest errors "
                    f"{_brief(row['best_band'])}; "
                        f"within the escape budget, hitl {row['escape_budget_band']['hitl_accuracy']:.4f}")
    return row


def _brief(row: dict) -> str:
    """The progress line's test figures."""
    return ", ".join(f"{k} {row[k]:.4f}" for k in ("hitl_accuracy", "review_rate", "escape_rate"))


def _run_line(part: list[Item], scores: np.ndarray, pass_below: float, reject_above: float, audit_rate: float,
              rng: np.random.Generator) -> tuple[list[Item], dict]:
    """The slice through the edge's decision; what it sends to review goes to the oracle."""
    from edge.decision import decide

    picked, counts = [], {"parts": len(part), "PASS": 0, "HOLD": 0, "REJECT": 0, "uncertain": 0, "audit": 0}
    for it, s in zip(part, scores):
        ruling = decide(float(s), pass_below, reject_above, audit_rate=audit_rate, draw=float(rng.random()))
        counts[ruling.action] += 1
        if ruling.review:
            counts[ruling.review] += 1
            picked.append(replace(it, weight=1.0 if ruling.review == "uncertain" else 1.0 / audit_rate))
    counts.update(pass_below=round(pass_below, 6), reject_above=round(reject_above, 6))
    return picked, counts


def weighted(items: list[Item], weight: float) -> list[Item]:
    return [replace(it, weight=weight) for it in items]


def _report(r: int | str, chain: Chain, info: dict, prepared: Prepared, new: int,
            scores: np.ndarray | None = None, dump: Path | None = None) -> dict:
    det = chain.detector
    t = det.thresholds
    scores = score_items(det, prepared.test) if scores is None else scores
    if dump is not None:
        # The current model's scores on its calibration images and on the test set, with what each image is,
        # so calibration rules can be compared on the same models without training them again.
        dump.mkdir(parents=True, exist_ok=True)
        cs, cy, cw = chain.calib_scores
        np.savez(dump / f"{chain.name}-{r}.npz", calib_scores=cs, calib_labels=cy, calib_weights=cw,
                 test_scores=scores, test_labels=np.array([it.label for it in prepared.test]),
                 test_artefact=np.array([bool(it.artefact) for it in prepared.test]),
                 test_group=np.array([it.group for it in prepared.test]),
                 thresholds=np.array([t.pass_below, t.reject_above]))
    fig = figures_on(scores, prepared.test, t.pass_below, t.reject_above)
    out = {"round": r, "labels": len(chain.labelled), "new_labels": new}
    out.update({k: _num(v) for k, v in asdict(fig).items()})
    out.update(model=det.version, pass_below=round(t.pass_below, 6), reject_above=round(t.reject_above, 6),
               candidate={**info, "test": _candidate_test(chain, info, prepared, fig)})
    return out


def _candidate_test(chain: Chain, info: dict, prepared: Prepared, current: Figures) -> dict:
    """The round's candidate on the test parts at its own thresholds, promoted or not: whether the gate's
    decision was right is then read off the row (a refused candidate the test parts call better was a miss)."""
    if info.get("promoted", True):
        fig = current  # the row's model is the candidate
    else:
        det = chain.load(info["version"])
        t = det.thresholds
        fig = figures_on(score_items(det, prepared.test), prepared.test, t.pass_below, t.reject_above)
    return {k: _num(v) for k, v in asdict(fig).items()}


def _num(v: float):
    return None if not np.isfinite(v) else round(float(v), 6)


def _config_dict(cfg: LoopConfig) -> dict:
    d = asdict(cfg)
    d["data"] = str(cfg.data)
    d["scores"] = None if cfg.scores is None else str(cfg.scores)
    return d


# The production budgets each data set is benchmarked at, unless given (escape, review, false reject): the
# casting line's, and the solar-cell line's wider ones for a harder task and a weaker detector.
DEFAULT_BUDGETS = {"casting": (0.0025, 0.03, 0.01), "elpv": (0.02, 0.20, 0.05)}


def budgets_for(data: Path, escape: float | None, review: float | None, false_reject: float | None):
    """The (escape, review, false-reject) budgets: each as given, else the data set's default."""
    default = DEFAULT_BUDGETS["elpv" if str(data) == "elpv" else "casting"]
    return tuple(d if v is None else v for v, d in zip((escape, review, false_reject), default))


def main(args) -> int:
    """The ``qc bench loop`` handler."""
    data = Path(args.data)
    check_layout(data)
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise DatasetError(f"--plot {args.plot}: the plot is written as PNG; give a FILE.png")
    sim = SimConfig(seed_size=args.seed_size, test_share=args.test_share, artefact_share=args.artefact_share,
                    seed=args.seed)
    escape_budget, review_budget, false_reject_budget = budgets_for(
        data, args.escape_budget, args.review_budget, args.false_reject_budget)
    cfg = LoopConfig(data=data, sim=sim, rounds=args.rounds, families=args.family, size=args.size,
                     epochs=args.epochs, widths=args.widths, blocks=args.blocks, freeze=args.freeze,
                     label_share=args.label_share, audit_rate=args.audit_rate, escape_budget=escape_budget,
                     review_budget=review_budget, false_reject_budget=false_reject_budget,
                     augment_artefacts=args.augment_artefacts, dihedral_mean={"1": False, "8": True}.get(args.views),
                     ceiling=review_budget if args.ceiling is not None and args.ceiling < 0 else args.ceiling,
                     scores=args.scores)
    doc = run(cfg, Progress(args.quiet))
    if args.plot is not None:
        from training.loop_plot import plot

        plot(doc, Path(args.plot))
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(table(doc))
        if args.plot is not None:
            print(f"plot: {args.plot}")
    return 0


def table(doc: dict) -> str:
    head = f"{'':>20} {'round':>5} {'labels':>6} " + " ".join(f"{k.replace('_rate', '').replace('_', ' '):>14}"
                                                           for k in FIGURES)
    lines = [head]
    groups = [("uncertainty", doc["rounds"]), ("random", doc["random_baseline"])]
    ceilings = doc.get("ceilings", [])
    for top in ceilings:
        groups += [(f"{top['family']} ceiling", [top])] + [
            (name, [{**top[key], "round": top["round"], "labels": top["labels"]}])
            for name, key in (("hindsight", "best_band"), ("hind+escape", "escape_budget_band"))]

    def figures(row: dict) -> str:
        return " ".join(f"{'-' if row[k] is None else format(row[k], '.4f'):>14}" for k in FIGURES)

    for name, rows in groups:
        for row in rows:
            lines.append(f"{name:>20} {row['round'] if isinstance(row['round'], int) else '-':>5} "
                         f"{row['labels']:>6} {figures(row)}")
            candidate = row.get("candidate") or {}
            if candidate.get("promoted") is False and "test" in candidate:
                lines.append(f"{'refused candidate':>20} {'':>5} {'':>6} {figures(candidate['test'])}")
    lines.append(f"data: {doc['data'].get('path')}: {doc['data'].get('seed')} seed, {doc['data'].get('stream')} "
                 f"stream, {doc['data'].get('test')} test images; {doc['seconds']} s")
    for top in ceilings:
        lines.append(f"{top['family']}: {top['size']} px, {top['views']} view(s), {top['infer_ms_1thread']} ms per part "
                     f"on 1 thread, trained in {top['candidate']['train_seconds']} s")
    if ceilings:
        lines.append(f"ceiling: a model trained on every seed and stream part, at its calibrated thresholds; "
                     f"hindsight: the same model with the band of at most "
                     f"{ceilings[0]['best_band']['review_share']} of the test parts that errs least, chosen on "
                     f"the test labels; hind+escape: the same within the escape budget (bounds, not results)")
    return "\n".join(lines)
