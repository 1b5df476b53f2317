"""Start training from a released model instead of from random weights.

A retrain that begins where the running model left off needs a few epochs on the
new verdicts, not a full schedule, and keeps what the old model knew. Only the
ONNX file is released, and its export folded each BatchNorm into the convolution
before it (weight scaled, bias added). So the weights are read back as: conv
weight = folded weight, BatchNorm = identity plus the folded bias (running mean 0,
running variance 1 - eps, scale 1). Fine-tuning keeps those BatchNorm statistics
frozen (``freeze_batchnorm``): batch statistics of a few hundred new images would
undo the folding. The input normalisation comes from the parent's manifest, so
the edge scales pixels exactly as before.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.manifest import MANIFEST_NAME, load_manifest
from training.errors import TrainError


def load_parent(version_dir: str | Path, widths: tuple[int, ...], stem: int = 0):  # noqa: ANN201
    """Return (DefectNet with the parent's weights, the parent's Normalisation)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from training.net import DefectNet
    from training.train import Normalisation

    version_dir = Path(version_dir)
    manifest = load_manifest(version_dir / MANIFEST_NAME)
    try:
        graph = onnx.load(str(version_dir / manifest.file)).graph
    except Exception as exc:  # onnx raises several types for a damaged file
        raise TrainError(f"cannot read the parent model {version_dir / manifest.file}: {exc}") from exc
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    net = DefectNet(widths, stem=stem)
    torch_convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    shapes = [tuple(weights[n.input[1]].shape) for n in convs]
    want = [tuple(c.weight.shape) for c in torch_convs]
    if shapes != want or len(gemms) != 1 or len(norms) != len(torch_convs):
        raise TrainError(f"parent model {manifest.version} has another architecture (convolutions {shapes}, "
                         f"this trainer builds {want}); train from scratch (warm_start = false)")
    with torch.no_grad():
        for node, conv, bn in zip(convs, torch_convs, norms):
            conv.weight.copy_(torch.from_numpy(weights[node.input[1]].copy()))
            bias = weights[node.input[2]] if len(node.input) > 2 else np.zeros(conv.out_channels, np.float32)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(bias.copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        gemm = gemms[0]
        w = weights[gemm.input[1]]
        transposed = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
        net.head.weight.copy_(torch.from_numpy((w if transposed else w.T).copy()))
        net.head.bias.copy_(torch.from_numpy(weights[gemm.input[2]].reshape(-1).copy()))
    spec = manifest.input
    norm = Normalisation(spec.scale, float(spec.mean[0]), float(spec.std[0]))
    return net, norm


def freeze_batchnorm(model) -> None:  # noqa: ANN001
    """Keep BatchNorm layers on their stored statistics while the rest trains."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
