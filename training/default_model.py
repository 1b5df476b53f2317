"""The built-in default model (models/default/): trained reproducibly on the synthetic line.

Fixed seeds, a fixed number of parts rendered at 1280x1024 and cropped to the
generator's part ROI (stored in the manifest as fractions of the frame, so an edge
crops live frames the same way), version 0.1.0. Training parts show defects of
moderate to full severity (clear examples teach fastest); validation and golden
parts come from the line's own mix, so the reported figures are the line's.
"""
from __future__ import annotations

import sys
from pathlib import Path

from models.manifest import MANIFEST_NAME, atomic_write, write_manifest
from training.data import ImageSet, roi_fractions
from training.train import TrainConfig

VERSION = "0.1.0"
SEED = 2024
WIDTH, HEIGHT = 1280, 1024
INPUT_HW = (128, 128)
TRAIN_PARTS = 2400
HELD_OUT_PARTS = 2000  # enough validation defects for the escape budget to mean something
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "default"


def build_default(out: Path = DEFAULT_OUT, train_parts: int = TRAIN_PARTS, held_out_parts: int = HELD_OUT_PARTS,
                  epochs: int = 16, hw: tuple[int, int] = INPUT_HW, log=sys.stderr):
    from hardware.synthetic import PartGenerator
    from training.pipeline import Budgets, build_model

    roi = roi_fractions(PartGenerator(seed=SEED, width=WIDTH, height=HEIGHT).roi(), WIDTH, HEIGHT)
    train_set = ImageSet.from_synthetic(train_parts, hw, seed=SEED, defect_rate=0.4, artefact_rate=0.3,
                                        severity=(0.5, 1.0))
    for s in train_set.samples:
        s.meta["split"] = "train"
    held = ImageSet.from_synthetic(held_out_parts, hw, seed=SEED + 1, defect_rate=0.4, artefact_rate=0.3)
    for i, s in enumerate(held.samples):
        s.meta["split"] = "val" if i % 2 == 0 else "golden"
    data = (train_set + held).dedup()
    cfg = TrainConfig(epochs=epochs, seed=SEED, progress=False)
    # A first model on a new line: a wide review band is cheaper than rejecting good parts, and
    # the verdicts it collects are what the first retrain learns from.
    result = build_model(data, VERSION, cfg, budgets=Budgets(escape=0.005, review=0.25, false_reject=0.05), roi=roi,
                         sources=[
        {"synthetic": {"seed": SEED, "parts": train_parts, "severity": [0.5, 1.0]}},
        {"synthetic": {"seed": SEED + 1, "parts": held_out_parts}}], log=log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / result.manifest.file, result.model_bytes)
    write_manifest(out / MANIFEST_NAME, result.manifest)
    return result
