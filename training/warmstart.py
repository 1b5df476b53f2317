"""Start training from a released model instead of from random weights.

A retrain that begins where the running model left off needs a few epochs on the
new verdicts, not a full schedule, and keeps what the old model knew. Only the
ONNX file is released, and its export folded each BatchNorm into the convolution
before it (weight scaled, bias added). So the weights are read back as: conv
weight = folded weight, BatchNorm = identity plus the folded bias (running mean 0,
running variance 1 - eps, scale 1). Fine-tuning keeps those BatchNorm statistics
frozen (``freeze_batchnorm``): batch statistics of a few hundred new images would
undo the folding. The input normalisation comes from the parent's manifest, so
the edge scales pixels exactly as before. Which network to rebuild comes from the
manifest's ``detector`` section (training.family), so any family warm-starts the same way.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from models.manifest import MANIFEST_NAME, load_manifest
from training.errors import TrainError
from training.family import NetSpec
from training.scaling import Normalisation


def parent_spec(manifest, expected: NetSpec) -> NetSpec:
    """The network a released model is: its manifest's ``detector`` section, or (older models without
    one) a defectnet of the widths this trainer builds, which the weight shapes then confirm."""
    if manifest.detector:
        return NetSpec.from_dict(manifest.detector)
    if expected.family == "defectnet":
        return NetSpec("defectnet", expected.widths, expected.stem)
    return NetSpec("defectnet")


def load_parent(version_dir: str | Path, expected: NetSpec | tuple[int, ...] = NetSpec()):  # noqa: ANN201
    """Return (the parent's network with its released weights, the parent's Normalisation).

    Refused (TrainError) when the parent is not the network this trainer builds
    (``expected``): another family, other widths or blocks, or an int8 graph.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from training.net import build

    if not isinstance(expected, NetSpec):  # widths alone: a defectnet
        expected = NetSpec("defectnet", tuple(expected))
    version_dir = Path(version_dir)
    manifest = load_manifest(version_dir / MANIFEST_NAME)
    spec = parent_spec(manifest, expected)
    advice = "train from scratch (warm_start = false)"
    if not spec.same_network(expected):
        raise TrainError(f"parent model {manifest.version} has another architecture ({spec.describe()}; this "
                         f"trainer builds {expected.describe()}); {advice}")
    if (manifest.detector or {}).get("precision", "fp32") != "fp32":
        raise TrainError(f"parent model {manifest.version} is {manifest.detector['precision']}; its weights cannot "
                         f"be fine-tuned; {advice}")
    try:
        graph = onnx.load(str(version_dir / manifest.file)).graph
    except Exception as exc:  # onnx raises several types for a damaged file
        raise TrainError(f"cannot read the parent model {version_dir / manifest.file}: {exc}") from exc
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    net = build(replace(spec, pretrained=False))
    torch_convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    shapes = [tuple(weights[n.input[1]].shape) if n.input[1] in weights else None for n in convs]
    want = [tuple(c.weight.shape) for c in torch_convs]
    if shapes != want or len(gemms) != 1 or len(norms) != len(torch_convs):
        raise TrainError(f"parent model {manifest.version} has another architecture (convolutions {shapes}, "
                         f"this trainer builds {want}); {advice}")
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
    spec_in = manifest.input
    norm = Normalisation(spec_in.scale, float(spec_in.mean[0]), float(spec_in.std[0]))
    return net, norm


def freeze_batchnorm(model) -> None:  # noqa: ANN001
    """Keep BatchNorm layers on their stored statistics while the rest trains."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
