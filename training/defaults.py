"""The trainer's defaults: which family, input size and number of epochs, chosen by the size of the data.

A plant engineer runs ``qc train run --data DIR`` and should get a good model in
reasonable time without knowing any of this. What is sensible depends on how many
labelled images there are:

- **Few labels** (fewer than ``PRETRAINED_BELOW`` training images): features learnt
  from a few hundred parts are the weak point, so the pretrained family (lite2) is
  fine-tuned at its native 300 px, scoring the mean of the 8 rotations/flips of a
  part; ImageNet features already see spots, edges and texture (on the solar cells
  it beat lite0 and defectnet: README "Detector families").
- **Many labels**: the from-scratch DefectNet (the wider one the loop benchmark
  uses, scoring the mean of the 8 rotations/flips of a part) learns features for the
  line's own parts as well as the backbone adapts its own, at a fraction of the
  training and inference cost.
- **Epochs** follow the number of images: every image is seen about
  ``IMAGES_SEEN / n`` times, between ``MIN_EPOCHS`` and ``MAX_EPOCHS``, so a small
  set gets the steps it needs and a large one finishes in minutes.

Any choice can be overridden (family, size, epochs); the chosen plan is printed and
the family lands in the manifest (training.family).
"""
from __future__ import annotations

from dataclasses import dataclass

from training.errors import TrainError
from training.family import FAMILIES, NetSpec

DEFAULT_FAMILY = "auto"
PRETRAINED_BELOW = 3000
#: Per family: training images seen in a default run, and the bounds on epochs.
IMAGES_SEEN = {"defectnet": 160_000, "lite0": 32_000, "lite2": 32_000}
MIN_EPOCHS = {"defectnet": 8, "lite0": 6, "lite2": 6}
MAX_EPOCHS = {"defectnet": 40, "lite0": 30, "lite2": 30}
#: Released weights: the running average for the fine-tuned families (their last steps wander on few labels).
EMA = {"defectnet": None, "lite0": 0.99, "lite2": 0.99}
#: The from-scratch net of a default run: wider than the built-in model's (training.family.DEFAULT_WIDTHS).
DEFECTNET_WIDTHS = (16, 32, 48, 64, 96)
#: Views scored per part: the mean of the 8 rotations/flips (defectnet: about 8 x 0.4 ms at the edge;
#: lite2, the few-label default, where accuracy matters more than its 8 x 26 ms).
VIEWS = {"defectnet": 8, "lite0": 1, "lite2": 8}


@dataclass(frozen=True)
class Plan:
    net: NetSpec
    size: int
    epochs: int
    why: str
    views: int = 1

    def train_config(self, **overrides):  # noqa: ANN201 (training.train.TrainConfig)
        from training.train import TrainConfig

        return TrainConfig(**{"epochs": self.epochs, "net": self.net, "ema": EMA[self.net.family],
                              "dihedral_mean": self.views == 8, **overrides})

    def describe(self) -> str:
        return (f"{self.net.describe()} at {self.size} px, {self.epochs} epochs, {self.views} view(s) per part "
                f"({self.why})")


def family_for(n_images: int | None) -> str:
    """The family for a data set of ``n_images`` (None: not known yet, e.g. before loading)."""
    return "lite2" if n_images is not None and n_images < PRETRAINED_BELOW else "defectnet"


def epochs_for(family: str, n_images: int | None) -> int:
    if not n_images:
        return MIN_EPOCHS[family]
    return int(min(MAX_EPOCHS[family], max(MIN_EPOCHS[family], round(IMAGES_SEEN[family] / n_images))))


def choose(family: str | None, size: int | None, n_images: int | None = None, epochs: int | None = None,
           views: int | None = None) -> Plan:
    """The plan for ``n_images`` training images; explicit ``family`` / ``size`` / ``epochs`` / ``views`` win."""
    family = family or DEFAULT_FAMILY
    if family != "auto" and family not in FAMILIES:
        raise TrainError(f"unknown detector family {family!r}; known: auto, {', '.join(FAMILIES)}")
    if family == "auto":
        chosen = family_for(n_images)
        why = (f"{n_images} images: " if n_images is not None else "") + (
            f"fewer than {PRETRAINED_BELOW}, pretrained features" if chosen == "lite2"
            else f"at least {PRETRAINED_BELOW}, features learnt from the line's parts")
    else:
        chosen, why = family, "as asked"
    net = NetSpec(chosen, widths=DEFECTNET_WIDTHS) if chosen == "defectnet" else NetSpec(chosen)
    if views not in (None, 1, 8):
        raise TrainError(f"views must be 1 or 8, got {views}")
    return Plan(net, size or net.default_size, epochs or epochs_for(chosen, n_images), why, views or VIEWS[chosen])
