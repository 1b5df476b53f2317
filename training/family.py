"""Detector families: which network a model is, how it is built, scaled and described in its manifest.

A family is a network design with one contract (grey part in, one defect probability
out, exported as plain ONNX that the edge runs without knowing the family):

- ``defectnet`` -- the small from-scratch CNN (training.net.DefectNet): cheapest to
  train and to run; it learns its features from the line's own labels.
- ``lite0`` -- EfficientNet-Lite0 with ImageNet weights from an installed package,
  cut after ``blocks`` blocks and fine-tuned (training.lite.LiteNet): features that
  already see edges, spots and texture, so a few hundred labels go much further.
- ``lite2`` -- the same design as EfficientNet-Lite2 (21 blocks, wider), trained at its
  native 300 px: more capacity for hard surfaces, the default for small data sets
  (training.defaults), at about 1.3x lite0's cost at the same size.

``NetSpec`` names the family and its options (``training.net.build`` makes the
network; this module imports no torch). It travels in the manifest's
``detector`` section (with the input size, the number of views scored and the
precision), so a retrain can rebuild the very network it fine-tunes from
(training.warmstart) and an engineer can read what a version is.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from training.errors import TrainError
from training.scaling import Normalisation

FAMILIES = ("defectnet", "lite0", "lite2")
#: The pretrained families (training.lite) and the MBConv blocks of each whole backbone.
LITE_BLOCKS = {"lite0": 16, "lite2": 21}
DEFAULT_WIDTHS = (8, 16, 24, 32, 48)
#: The lite families' input scaling, x = (pixel * scale - mean) / std = pixel / 127.5 - 1: their training range.
LITE0_NORMALISATION = (1 / 255, 0.5, 0.5)
#: The input side each family is trained at unless told otherwise.
DEFAULT_SIZES = {"defectnet": 128, "lite0": 224, "lite2": 300}
#: AdamW peak learning rate: a from-scratch net takes large steps, a pretrained one small ones.
DEFAULT_LR = {"defectnet": 4e-3, "lite0": 1e-3, "lite2": 1e-3}


@dataclass(frozen=True)
class NetSpec:
    family: str = "defectnet"
    widths: tuple[int, ...] = DEFAULT_WIDTHS  # defectnet: conv widths, one per 2x2 pooling stage
    stem: int = 0  # defectnet: channels of a stride-2 stem conv (0: none)
    blocks: int = 0  # lite*: MBConv blocks kept (0: the whole backbone, 16 for lite0, 21 for lite2)
    pretrained: bool = True  # lite*: start from the ImageNet weights (False: random, for tests and ablations)
    extra: dict = field(default_factory=dict, compare=False)  # manifest fields read back but not used to build

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise TrainError(f"unknown detector family {self.family!r}; known: {', '.join(FAMILIES)}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) < 1 or self.stem < 0:
            raise TrainError(f"defectnet widths must be positive channel counts, got {list(self.widths)}")
        if self.pretrained_family:
            total = LITE_BLOCKS[self.family]
            if not self.blocks:
                object.__setattr__(self, "blocks", total)
            if not 1 <= self.blocks <= total:
                raise TrainError(f"{self.family} keeps 1..{total} blocks, got {self.blocks}")

    @property
    def pretrained_family(self) -> bool:
        return self.family in LITE_BLOCKS

    @property
    def default_size(self) -> int:
        return DEFAULT_SIZES[self.family]

    @property
    def default_lr(self) -> float:
        return DEFAULT_LR[self.family]

    def normalisation(self, images: np.ndarray) -> Normalisation:
        """The input scaling: fitted to the data for a from-scratch net, the backbone's own for a pretrained one."""
        if self.pretrained_family:
            return Normalisation(*LITE0_NORMALISATION)
        return Normalisation.fit(images)

    def describe(self) -> str:
        if self.family == "defectnet":
            return f"defectnet widths {','.join(map(str, self.widths))}" + (f", stem {self.stem}" if self.stem else "")
        whole = self.blocks == LITE_BLOCKS[self.family]
        return (f"{self.family} {'(whole backbone)' if whole else f'cut after block {self.blocks}'}"
                + ("" if self.pretrained else " (random init)"))

    # ------------------------------------------------------------------ manifest
    def to_dict(self) -> dict:
        d = {"family": self.family}
        if self.family == "defectnet":
            d.update(widths=list(self.widths), stem=self.stem)
        else:
            d.update(blocks=self.blocks, pretrained="imagenet" if self.pretrained else None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetSpec:
        """The spec a manifest's ``detector`` section describes (TrainError names what is wrong)."""
        if not isinstance(d, dict) or not isinstance(d.get("family"), str):
            raise TrainError(f"manifest detector section must name a family, got {d!r}")
        known = {"family", "widths", "stem", "blocks", "pretrained"}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "pretrained" in kwargs:
            kwargs["pretrained"] = bool(kwargs["pretrained"])
        try:
            return cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})
        except (TypeError, ValueError) as exc:
            raise TrainError(f"manifest detector section is malformed: {exc}") from exc

    def same_network(self, other: NetSpec) -> bool:
        """True when both build the same layers (pretrained or not does not change the shapes)."""
        return replace(self, pretrained=True, extra={}) == replace(other, pretrained=True, extra={})


def describe_dict(spec: NetSpec, input_hw: tuple[int, int], views: int, precision: str = "fp32") -> dict:
    """The manifest's ``detector`` section."""
    return {**spec.to_dict(), "input_hw": list(input_hw), "views": views, "precision": precision}
