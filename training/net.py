"""The defect classifier: a small grey-input CNN sized for the edge's ~2 ms single-thread budget.

Five Conv-BN-ReLU blocks, each followed by 2x2 max pooling (the first conv runs at
full resolution: a pit a few pixels wide must survive the first layer), then both
global average and global max pooling. Max pooling keeps a small, local defect from
being averaged away over a large good surface; the average keeps the overall look.
A linear layer and a sigmoid give the defect probability, shape (N, 1).

``DihedralMean`` wraps a trained net so that its score is the mean over the 8
rotations/flips of the input, inside the one exported graph: test-time
augmentation that the edge runs as an ordinary model, at about 8x the inference.

``build`` makes the network of any family (training.family.NetSpec).

Imported only on the training side (torch).
"""
from __future__ import annotations

import torch
from torch import nn

from training.family import DEFAULT_WIDTHS, NetSpec


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class DefectNet(nn.Module):
    """(N, 1, H, W) normalised grey -> (N, 1) defect probability."""

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS, channels: int = 1, stem: int = 0):
        super().__init__()
        layers, cin = [], channels
        if stem:
            # A stride-2 stem sees every input pixel (kernel > stride) at a quarter of the cost,
            # which lets the input be large enough for thin cracks to survive the resize.
            layers.append(nn.Sequential(nn.Conv2d(cin, stem, 4, stride=2, padding=1, bias=False),
                                        nn.BatchNorm2d(stem), nn.ReLU(inplace=True)))
            cin = stem
        for w in widths:
            layers.append(_block(cin, w))
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, 1)
        self.widths = tuple(widths)
        self.stem = stem

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class DihedralMean(nn.Module):
    """A net's score averaged over the 8 rotations/flips of its (square) input.

    A part has no preferred orientation on the belt and training already shows all 8
    (training.augment), so the views disagree only where the net is unsure; their mean
    ranks parts more steadily than any one view. Exported as one graph (8 views in one batch).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.transpose(2, 3)
        views = torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3), t, t.flip(3), t.flip(2), t.flip(2).flip(3)], 0)
        return self.net(views).reshape(8, x.shape[0], 1).mean(0)


def build(spec: NetSpec) -> nn.Module:
    """A fresh network of ``spec`` (training.family), with ImageNet weights where the family has them."""
    if spec.family == "defectnet":
        return DefectNet(spec.widths, stem=spec.stem)
    from training.lite import LiteNet, load_imagenet

    net = LiteNet(spec.blocks, variant=spec.family)
    return load_imagenet(net) if spec.pretrained else net
