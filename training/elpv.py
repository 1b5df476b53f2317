"""The solar-cell electroluminescence photographs of the ``elpv-dataset`` package, as a labelled image set.

2,624 grey 300x300 crops of single solar cells (mono- and polycrystalline), each with
a defect probability given by experts (0, 1/3, 2/3, 1); a cell with probability
>= ``threshold`` (0.5) counts as defective. The images are read where the package
installed them and never copied (licence CC BY-NC-SA 4.0: use, do not redistribute).
Only the package's files are read; its own loader (which needs Pillow) is not used.

Reference: Deitsch et al., "Automatic classification of defective photovoltaic module
cells in electroluminescence images", Solar Energy 185 (2019).
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from training.data import FileJob, ImageSet
from training.errors import DatasetError

NAME = "elpv"
PACKAGE = "elpv-dataset"


def data_root() -> Path:
    """The installed package's data folder (labels.csv, images/), or DatasetError saying how to install it."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"--data {NAME}: the solar-cell photographs come from the package {PACKAGE} "
                           f"(pip install {PACKAGE}; licence CC BY-NC-SA 4.0)")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (root / "labels.csv").is_file():
        raise DatasetError(f"{root}/labels.csv is missing: the {PACKAGE} install is incomplete (reinstall it)")
    return root


def jobs(root: Path, threshold: float = 0.5) -> list[FileJob]:
    """One FileJob per row of ``root/labels.csv`` ("images/cellNNNN.png  probability  type")."""
    out = []
    with open(root / "labels.csv", encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter=" ", skipinitialspace=True), 1):
            if not row:
                continue
            try:
                name, prob, kind = row[0], float(row[1]), row[2]
            except (IndexError, ValueError):
                raise DatasetError(f"{root / 'labels.csv'} line {n}: expected 'path probability type', "
                                   f"got {' '.join(row)!r}") from None
            if not 0.0 <= prob <= 1.0:
                raise DatasetError(f"{root / 'labels.csv'} line {n}: probability {prob} is not in [0, 1]")
            out.append(FileJob(root / name, int(prob >= threshold), None,
                               {"defect_probability": prob, "cell_type": kind}))
    if not out:
        raise DatasetError(f"{root / 'labels.csv'} lists no images")
    return out


def load(hw: tuple[int, int], root: Path | None = None, threshold: float = 0.5, workers: int = 2) -> ImageSet:
    """The whole set at model input size ``hw``."""
    return ImageSet.from_files(jobs(root or data_root(), threshold), hw, workers=workers)
