"""``qc bench loop`` on a small synthetic folder: splits by whole groups, seeded artefacts, the JSON and the plot."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware.synthetic import PartGenerator
from qc.cli import main as qc_main
from training.data import ImageSet
from training.errors import DatasetError
from training.loop_bench import BENCH_EPOCHS, BENCH_SHOWINGS, DEFAULT_BUDGETS, LoopConfig, budgets_for
from training.loop_sim import SimConfig, prepare

HW = (32, 32)
FIGURES = ("labels", "ai_accuracy", "hitl_accuracy", "review_rate", "escape_rate", "false_reject_rate",
           "artefact_false_reject_rate")


def _write(folder, name, image):
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), image)


def _render_parts(root, seed: int, n: int) -> tuple[str, np.ndarray]:
    """DIR/{ok,def}/pNNN.png: n rendered parts at 150 px; the name and image of the first good one."""
    gen = PartGenerator(seed=seed, width=320, height=320, defect_rate=0.45, artefact_rate=0.0)
    first_ok = None
    for i in range(n):
        frame, truth = gen.render(i)
        image = cv2.resize(frame, (150, 150), interpolation=cv2.INTER_AREA)
        label = "def" if truth.is_defect else "ok"
        _write(root / label, f"p{i:03d}.png", image)
        if label == "ok" and first_ok is None:
            first_ok = (f"p{i:03d}.png", image)
    return first_ok


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """DIR/{ok,def}: 150 rendered parts plus a rotated+flipped copy of ok/p000 put in on purpose."""
    root = tmp_path_factory.mktemp("loopdata")
    first_ok, image = _render_parts(root, 5, 150)
    _write(root / "ok", "zz_rotated_copy.png", cv2.flip(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), 1))
    return root, first_ok


def _where(prepared) -> dict[str, tuple[str, int]]:
    out = {}
    for name in ("seed", "stream", "test"):
        for it in getattr(prepared, name):
            out[Path(it.sample.meta["path"]).name] = (name, it.group)
    return out


def test_groups_never_straddle_splits(folder):
    root, first_ok = folder
    data = ImageSet.from_folders(root, HW)
    for seed in range(4):
        p = prepare(data, SimConfig(seed_size=30, test_share=0.2, seed=seed))
        where = _where(p)
        assert where[first_ok] == where["zz_rotated_copy.png"]  # same split, same group
        groups = {name: {it.group for it in getattr(p, name)} for name in ("seed", "stream", "test")}
        assert not groups["seed"] & groups["stream"] and not groups["seed"] & groups["test"]
        assert not groups["stream"] & groups["test"]
        assert len(p.seed) + len(p.stream) + len(p.test) == 151
        assert abs(len(p.seed) - 30) <= 3 and {it.role for it in p.seed} == {"train", "calib", "gate"}


def test_a_chain_of_near_copies_trains_and_never_calibrates_or_gates(tmp_path):
    """Calib and gate are drawn as the test set is: a 41-image chain of one photo would make calibration one part."""
    _, chain_ok = _render_parts(tmp_path, 8, 120)
    for k in range(1, 41):  # brighter copies: the same average hash, so one near-duplicate group
        _write(tmp_path / "ok", f"copy{k:02d}.png", np.clip(chain_ok.astype(int) + k, 0, 255).astype(np.uint8))
    data = ImageSet.from_folders(tmp_path, HW)
    in_stream = 0
    for seed in range(6):
        p = prepare(data, SimConfig(seed_size=30, test_share=0.2, seed=seed))
        chain = {it.group for it in p.seed + p.stream + p.test if Path(it.sample.meta["path"]).name == "copy01.png"}
        (group,) = chain
        roles = {it.role for it in p.stream if it.group == group}
        if roles:
            in_stream += 1
            assert roles == {"train"}, f"seed {seed}: the chain of near-copies took the {roles} role"
        for role in ("calib", "gate"):
            assert any(it.role == role for it in p.stream), f"seed {seed}: no stream part has the {role} role"
    assert in_stream >= 3  # the chain is too big for the test quota, so it mostly lands in the stream


def test_artefact_injection_is_seeded_and_only_on_good_stream_and_test_parts(folder):
    root, _ = folder
    data = ImageSet.from_folders(root, HW)
    cfg = SimConfig(seed_size=30, artefact_share=0.5, seed=3)
    a, b = prepare(data, cfg), prepare(data, cfg)
    painted = [it for it in a.stream + a.test if it.artefact]
    assert painted and all(it.label == 0 for it in painted)
    assert not any(it.artefact for it in a.seed)
    twins = {it.sample.meta["sha"]: it for it in b.stream + b.test}
    for it in painted:
        twin = twins[it.sample.meta["sha"]]
        assert twin.artefact == it.artefact and np.array_equal(twin.image, it.image)
        assert not np.array_equal(it.image, it.sample.image)  # something was painted
    good = [it for it in a.stream + a.test if it.label == 0]
    assert 0.25 < len(painted) / len(good) < 0.75


@pytest.fixture(scope="module")
def bench(folder, tmp_path_factory):
    root, _ = folder
    png = tmp_path_factory.mktemp("plot") / "loop.png"
    scores = png.parent / "scores"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = qc_main(["bench", "loop", "--data", str(root), "--seed-size", "40", "--rounds", "2", "--epochs", "2",
                      "--size", str(HW[0]), "--label-share", "0.4,0.2", "--audit-rate", "0.05", "--json",
                      "--plot", str(png), "--ceiling", "0.1", "--quiet", "--scores", str(scores)])
    assert rc == 0
    return json.loads(out.getvalue()), png


def test_scores_of_every_reported_model_are_kept_for_study(bench):
    doc, png = bench
    files = sorted(p.name for p in (png.parent / "scores").iterdir())
    assert files == ["ceiling-defectnet-ceiling.npz", "random-1.npz", "random-2.npz",  # round 0 is one model
                     "uncertainty-0.npz", "uncertainty-1.npz", "uncertainty-2.npz"]
    kept = np.load(png.parent / "scores" / "uncertainty-2.npz")
    row = doc["rounds"][2]
    assert kept["test_scores"].shape == kept["test_labels"].shape == (doc["data"]["test"],)
    assert kept["calib_scores"].shape == kept["calib_labels"].shape == kept["calib_weights"].shape
    assert list(np.round(kept["thresholds"], 6)) == [row["pass_below"], row["reject_above"]]


def test_json_has_the_documented_figures_per_round(bench):
    doc, _ = bench
    assert set(doc) >= {"rounds", "random_baseline", "data", "seconds"}
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    for row in doc["rounds"] + doc["random_baseline"]:
        for key in FIGURES:
            assert key in row
        for key in FIGURES[1:]:
            assert row[key] is None or 0.0 <= row[key] <= 1.0
        assert row["candidate"]["epochs"] == 2  # --epochs 2 overrides the showings rule
    labels = [r["labels"] for r in doc["rounds"]]
    assert labels == sorted(labels) and labels[-1] > labels[0]


def test_labels_are_counted_from_the_verdicts(bench):
    doc, _ = bench
    rounds = doc["rounds"]
    assert rounds[0]["labels"] == doc["data"]["seed"]
    for prev, row in zip(rounds, rounds[1:]):
        line = row["line"]
        assert row["new_labels"] == line["uncertain"] + line["audit"] == line["HOLD"] + line["audit"]
        assert row["labels"] == prev["labels"] + row["new_labels"]
    assert sum(r["line"]["parts"] for r in rounds[1:]) == doc["data"]["stream"]


def test_each_round_reviews_its_own_label_share_of_its_slice(bench):
    doc, _ = bench
    shares = [r["line"]["uncertain"] / r["line"]["parts"] for r in doc["rounds"][1:]]
    assert shares == pytest.approx([0.4, 0.2], abs=0.02)
    assert doc["config"]["label_share"] == [0.4, 0.2]
    cfg = LoopConfig(data=Path("."), label_share=(0.4, 0.2), audit_rate=(0.2, 0.03))
    assert [cfg.share_for_round(r) for r in (1, 2, 3, 4)] == [0.4, 0.2, 0.2, 0.2]
    assert [cfg.audit_for_round(r) for r in (1, 2, 3)] == [0.2, 0.03, 0.03]
    with pytest.raises(DatasetError, match="label-share"):
        LoopConfig(data=Path("."), label_share=(0.4, 1.2))
    with pytest.raises(DatasetError, match="audit-rate"):
        LoopConfig(data=Path("."), audit_rate=(0.0,))


def test_a_growing_label_set_trains_fewer_epochs_within_bounds():
    rule = LoopConfig(data=Path(".")).epochs_rule("defectnet")
    most = BENCH_EPOCHS["defectnet"]
    assert rule(100) == most  # a seed set gets every epoch
    assert rule(1600) == round(BENCH_SHOWINGS["defectnet"] / 1600) < most
    assert rule(10**6) == -(-most // 3)  # never under a third of them
    assert LoopConfig(data=Path("."), epochs=7).epochs_rule("defectnet") is None  # explicit epochs win


def test_each_data_set_has_its_own_default_budgets():
    assert budgets_for(Path("elpv"), None, None, None) == DEFAULT_BUDGETS["elpv"]
    assert budgets_for(Path("../shared/datasets/casting"), None, None, None) == DEFAULT_BUDGETS["casting"]
    assert budgets_for(Path("elpv"), 0.01, None, None) == (0.01, *DEFAULT_BUDGETS["elpv"][1:])


def test_random_baseline_uses_the_same_label_counts(bench):
    doc, _ = bench
    assert [r["labels"] for r in doc["random_baseline"]] == [r["labels"] for r in doc["rounds"]]


def test_a_refused_candidate_is_reported_with_its_own_test_figures(folder, tmp_path, monkeypatch):
    """Each round row carries its candidate's test figures, so a gate decision can be checked against the
    test parts: for a refused candidate they are the candidate's, not the kept model's."""
    from types import SimpleNamespace

    import training.gate
    from edge.detector import Detector
    from training.loop_bench import _num, _report, weighted
    from training.loop_sim import Chain, figures_on, score_items
    from training.pipeline import Budgets

    root, _ = folder
    prepared = prepare(ImageSet.from_folders(root, HW), SimConfig(seed_size=40, seed=0))
    cfg = LoopConfig(data=root, epochs=2, size=HW[0])
    chain = Chain("c", HW, tmp_path, cfg.train_config("defectnet"), Budgets(), training.gate.GateRule())
    chain.add_labels(weighted(prepared.seed, 1.0))
    first = _report(0, chain, chain.retrain(), prepared, new=len(prepared.seed))
    assert first["candidate"]["test"] == {k: first[k] for k in first["candidate"]["test"]}  # it is the row's model
    chain.add_labels(weighted(prepared.stream, 1.0))
    monkeypatch.setattr(training.gate, "gate", lambda *a, **k: SimpleNamespace(promoted=False, reason="refused"))
    info = chain.retrain()
    row = _report(1, chain, info, prepared, new=len(prepared.stream))
    assert row["model"] == "0.1.0" and info["version"] == "0.2.0" and not info["promoted"]
    det = Detector.load(tmp_path / "c" / "0.2.0", roi=(0, 0, HW[1], HW[0]), warmup=1)
    fig = figures_on(score_items(det, prepared.test), prepared.test, det.thresholds.pass_below,
                     det.thresholds.reject_above)
    assert row["candidate"]["test"] == {k: _num(v) for k, v in vars(fig).items()}


def test_plot_is_a_png(bench):
    _, png = bench
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[0] > 200
    assert image.std() > 5


@pytest.mark.parametrize("layout", ["missing", "no-classes"])
def test_cli_refuses_bad_data_folder(tmp_path, capsys, layout):
    data = tmp_path / "data"
    if layout == "no-classes":
        (data / "images").mkdir(parents=True)
    rc = qc_main(["bench", "loop", "--data", str(data), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(data) in err
    assert ("no such folder" in err) if layout == "missing" else ("ok/ and def/" in err)


def test_labelling_band_fits_the_share_around_the_calibrated_band():
    from training.loop_sim import fit_band

    scores = np.random.default_rng(0).uniform(0, 1, 1000)
    pb, ra = fit_band(0.45, 0.5, scores, 0.2)
    held = np.mean((scores >= pb) & (scores < ra))
    assert pb <= 0.45
    assert ra >= 0.5
    assert abs(held - 0.2) <= 0.002
    assert abs((0.45 - pb) - (ra - 0.5)) < 0.05  # grown on both sides, nearest scores first
    # Too wide (the new seed model's band): narrowed to the share around its middle.
    pb, ra = fit_band(0.2, 0.8, scores, 0.1)
    assert 0.2 <= pb
    assert ra <= 0.8
    assert abs(np.mean((scores >= pb) & (scores < ra)) - 0.1) <= 0.002
    assert abs((pb - 0.2) - (0.8 - ra)) < 0.05


def test_reviewed_parts_carry_the_line_parts_they_stand_for():
    """Every band part is reviewed (weight 1); an audit stands for 1/audit-rate confident parts."""
    from training.loop_bench import _run_line
    from training.loop_sim import Item

    scores = np.linspace(0.0, 1.0, 2001)
    part = [Item(np.zeros((4, 4), np.uint8), int(s >= 0.5), i, "train") for i, s in enumerate(scores)]
    picked, line = _run_line(part, scores, 0.4, 0.6, 0.05, np.random.default_rng(0))
    band = {it.group for it in picked if 0.4 <= scores[it.group] < 0.6}
    assert len(band) == line["uncertain"] == int(np.sum((scores >= 0.4) & (scores < 0.6)))
    assert {it.weight for it in picked if it.group in band} == {1.0}
    audits = [it for it in picked if it.group not in band]
    assert len(audits) == line["audit"] > 0 and {it.weight for it in audits} == {20.0}


def test_ceiling_trains_on_every_stream_part_and_bounds_the_thresholds(bench):
    doc, _ = bench
    top = doc["ceilings"][0]
    assert top["family"] == "defectnet" and top["size"] == HW[0]
    assert top["labels"] == doc["data"]["seed"] + doc["data"]["stream"]
    # Every labelled part trains or calibrates: a first model needs no gate set.
    assert top["candidate"]["train_images"] + top["candidate"]["calib_images"] == top["labels"]
    band = top["best_band"]
    assert band["review_share"] == 0.1 and band["review_rate"] <= 0.1 + 1e-9
    # A band of width 0 at 0.5 is one of the bands it chose from.
    assert band["hitl_accuracy"] >= top["ai_accuracy"] - 1e-9
    assert band["pass_below"] <= band["reject_above"]
    within = top["escape_budget_band"]
    assert within["review_rate"] <= 0.1 + 1e-9 and within["escape_rate"] <= doc["config"]["escape_budget"]
    assert within["hitl_accuracy"] <= band["hitl_accuracy"]
    from training.loop_bench import table

    rows = {line.split()[0]: line for line in table(doc).splitlines()}
    assert f"{band['hitl_accuracy']:.4f}" in rows["hindsight"] and str(top["labels"]) in rows["defectnet"]


def test_plot_marks_the_ceiling(bench, tmp_path):
    from training.loop_plot import plot

    doc, _ = bench
    with_lines = cv2.imread(str(plot(doc, tmp_path / "with.png")))
    without = cv2.imread(str(plot({k: v for k, v in doc.items() if k != "ceilings"}, tmp_path / "without.png")))
    assert with_lines.shape == without.shape and (with_lines != without).any()


def test_best_band_errs_least_of_all_bands_within_the_share():
    from edge.decision import HOLD, PASS, REJECT, decide
    from training.loop_sim import best_band

    rng = np.random.default_rng(4)
    for trial in range(20):
        y = rng.integers(0, 2, 60)
        s = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1).round(2)  # rounded: ties that no threshold can split
        share = (0.0, 0.05, 0.1, 0.2)[trial % 4]

        def outcome(pb, ra, s=s, y=y):
            acts = np.array([decide(float(v), pb, ra).action for v in s])
            wrong = ((acts == PASS) & (y == 1)) | ((acts == REJECT) & (y == 0))
            return int(wrong.sum()), int(((acts == PASS) & (y == 1)).sum()), float(np.mean(acts == HOLD))

        errors, escapes, held = outcome(*best_band(s, y, share))
        cap = (1.0, 0.0, 0.05, 0.1)[trial % 4 - 1]
        capped_e, capped_esc, capped_held = outcome(*best_band(s, y, share, max_escape_rate=cap))
        assert held <= share + 1e-9
        assert capped_held <= share + 1e-9
        assert capped_esc <= cap * y.sum()
        cuts = np.concatenate([[0.0], np.unique(s) + 1e-6, [1.5]])
        for lo in cuts:
            for hi in cuts[cuts >= lo]:
                e, esc, h = outcome(lo, hi)
                if h <= share + 1e-9:
                    assert (errors, escapes) <= (e, esc), (trial, lo, hi)
                    if esc <= cap * y.sum():
                        assert (capped_e, capped_esc) <= (e, esc), (trial, lo, hi)


def test_every_input_size_gets_the_same_groups_and_test_parts(folder):
    """Groups are hashed from the images as read, so families at different sizes meet the same test set."""
    root, _ = folder
    splits = []
    for side in (32, 48, 64):
        p = prepare(ImageSet.from_folders(root, (side, side)), SimConfig(seed_size=30, seed=1))
        splits.append({name: sorted(it.sample.meta["sha"] for it in getattr(p, name))
                       for name in ("seed", "stream", "test")})
    assert splits[0] == splits[1] == splits[2]


def test_solar_cell_set_reads_labels_csv_with_probability_threshold(tmp_path):
    from training import elpv

    (tmp_path / "images").mkdir()
    rows = []
    for i, prob in enumerate((0.0, 1 / 3, 2 / 3, 1.0)):
        image = np.full((40, 40), 60 + 40 * i, np.uint8)
        assert cv2.imwrite(str(tmp_path / "images" / f"cell{i:04d}.png"), image)
        rows.append(f"images/cell{i:04d}.png  {prob}  {'mono' if i % 2 else 'poly'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = elpv.load((16, 16), root=tmp_path)
    assert [s.label for s in data.samples] == [0, 0, 1, 1]  # probability >= 0.5 is defective
    assert data.samples[1].meta["cell_type"] == "mono" and data.samples[2].meta["defect_probability"] == 2 / 3
    (tmp_path / "labels.csv").write_text("images/cell0000.png  high  mono\n")
    with pytest.raises(DatasetError, match="line 1"):
        elpv.load((16, 16), root=tmp_path)
