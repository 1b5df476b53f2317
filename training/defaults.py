"""The trainer's defaults: which family, input size and number of epochs, chosen by the size of the data.

A plant engineer runs ``qc train run --data DIR`` and should get a good model in
reasonable time without knowing any of this. What is sensible depends on how many
labelled images there are:

- **Few labels** (fewer than ``PRETRAINED_BELOW`` training images): features learnt
  from a few hundred parts are the weak point, so the pretrained family (lite0) is
  fine-tuned; ImageNet features already see spots, edges and texture.
- **Many labels**: the from-scratch DefectNet learns features for the line's own
  parts as well as the backbone adapts its own, at a fraction of the training and
  inference cost.
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
IMAGES_SEEN = {"defectnet": 80_000, "lite0": 24_000}
MIN_EPOCHS = {"defectnet": 8, "lite0": 6}
MAX_EPOCHS = {"defectnet": 40, "lite0": 30}


@dataclass(frozen=True)
class Plan:
    net: NetSpec
    size: int
    epochs: int
    why: str

    def train_config(self, **overrides):  # noqa: ANN201 (training.train.TrainConfig)
        from training.train import TrainConfig

        return TrainConfig(**{"epochs": self.epochs, "net": self.net, **overrides})

    def describe(self) -> str:
        return f"{self.net.describe()} at {self.size} px, {self.epochs} epochs ({self.why})"


def family_for(n_images: int | None) -> str:
    """The family for a data set of ``n_images`` (None: not known yet, e.g. before loading)."""
    return "lite0" if n_images is not None and n_images < PRETRAINED_BELOW else "defectnet"


def epochs_for(family: str, n_images: int | None) -> int:
    if not n_images:
        return MIN_EPOCHS[family]
    return int(min(MAX_EPOCHS[family], max(MIN_EPOCHS[family], round(IMAGES_SEEN[family] / n_images))))


def choose(family: str | None, size: int | None, n_images: int | None = None, epochs: int | None = None) -> Plan:
    """The plan for ``n_images`` training images; explicit ``family`` / ``size`` / ``epochs`` win."""
    family = family or DEFAULT_FAMILY
    if family != "auto" and family not in FAMILIES:
        raise TrainError(f"unknown detector family {family!r}; known: auto, {', '.join(FAMILIES)}")
    if family == "auto":
        chosen = family_for(n_images)
        why = (f"{n_images} images: " if n_images is not None else "") + (
            f"fewer than {PRETRAINED_BELOW}, pretrained features" if chosen == "lite0"
            else f"at least {PRETRAINED_BELOW}, features learnt from the line's parts")
    else:
        chosen, why = family, "as asked"
    net = NetSpec(chosen)
    return Plan(net, size or net.default_size, epochs or epochs_for(chosen, n_images), why)
