"""Real ONNX models built from graph nodes (no torch): for tests, benchmarks and the demo.

- ``tiny_cnn_bytes``: a small CNN (Conv+Relu stride-2 blocks, global average pool,
  Gemm, Sigmoid) with deterministic random weights; heavier with width, depth and
  input size, which makes it a stand-in for a trained detector in benchmarks.
- ``constant_model_bytes``: always outputs one value (NaN or 0.9 exercise the
  edge's fail-safe and reject paths). The input still flows through the graph, so
  the runtime cannot fold the model away.
- ``threshold_model_bytes``: a hand-built dark-spot detector (local darkness against
  the blurred background), whose score rises with pits and spots on a bright part.

Imports onnx, a training and development dependency: the edge never imports this.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
#: IR 8 is read by every onnxruntime the edge supports (>= 1.17).
IR_VERSION = 8


def _model(nodes: list, inputs: list, outputs: list, inits: list, name: str) -> bytes:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="qcloop.models.onnx_build")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _io(input_hw: tuple[int, int], channels: int, input_name: str, output_name: str) -> tuple:
    h, w = (int(v) for v in input_hw)
    if h < 1 or w < 1 or channels not in (1, 3):
        raise ValueError(f"input_hw must be positive and channels 1 or 3, got {input_hw}, {channels}")
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, channels, h, w])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 1])
    return x, y


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def tiny_cnn_bytes(input_hw: tuple[int, int] = (64, 64), channels: int = 1, width: int = 8, depth: int = 3,
                   seed: int = 0, input_name: str = "image", output_name: str = "score") -> bytes:
    """A small real CNN -> sigmoid score of shape (1, 1). Same arguments, same bytes."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
    x, y = _io(input_hw, channels, input_name, output_name)
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, c_in = input_name, channels
    for i in range(depth):
        c_out = width * (2 ** min(i, 2))
        fan_in = c_in * 9
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in, 3, 3))
        b = rng.normal(0.0, 0.05, size=(c_out,))
        inits += [_init(f"conv{i}.w", w), _init(f"conv{i}.b", b)]
        nodes += [
            helper.make_node("Conv", [prev, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1], strides=[2, 2], name=f"conv{i}"),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"),
        ]
        prev, c_in = f"relu{i}", c_out
    fc_w = rng.normal(0.0, 1.0 / np.sqrt(c_in), size=(1, c_in))
    inits += [_init("fc.w", fc_w), _init("fc.b", np.array([-0.5]))]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logit"], transB=1, name="fc"),
        helper.make_node("Sigmoid", ["logit"], [output_name], name="sigmoid"),
    ]
    return _model(nodes, [x], [y], inits, "tiny_cnn")


def constant_model_bytes(value: float, input_hw: tuple[int, int] = (64, 64), channels: int = 1,
                         input_name: str = "image", output_name: str = "score") -> bytes:
    """A model whose output is always ``value`` (shape (1, 1)), e.g. NaN or 0.9."""
    x, y = _io(input_hw, channels, input_name, output_name)
    inits = [_init("zero", np.array([0.0])), _init("value", np.array([value]))]
    nodes = [
        helper.make_node("Flatten", [input_name], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "value"], [output_name]),
    ]
    return _model(nodes, [x], [y], inits, "constant")


def threshold_model_bytes(input_hw: tuple[int, int] = (64, 64), channels: int = 1, contrast: float = 0.15,
                          gain: float = 40.0, blur: int = 15, input_name: str = "image",
                          output_name: str = "score") -> bytes:
    """A dark-spot detector: score = sigmoid(gain * (darkest spot below its surroundings - contrast)).

    A spot ``contrast`` darker than its blurred neighbourhood (in input units, 0..1
    with the default scaling) scores 0.5; a uniform part scores near 0. Spots must
    cover a few pixels (3x3 mean), so single-pixel noise does not count.
    """
    if blur < 3 or blur % 2 == 0:
        raise ValueError(f"blur must be an odd kernel size >= 3, got {blur}")
    x, y = _io(input_hw, channels, input_name, output_name)
    half = blur // 2
    inits = [_init("contrast", np.array([contrast])), _init("gain", np.array([gain]))]
    nodes = [
        helper.make_node("AveragePool", [input_name], ["background"], kernel_shape=[blur, blur],
                         pads=[half] * 4, strides=[1, 1], count_include_pad=0),
        helper.make_node("Sub", ["background", input_name], ["darker"]),
        helper.make_node("Relu", ["darker"], ["dark"]),
        helper.make_node("AveragePool", ["dark"], ["spot"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[1, 1], count_include_pad=0),
        helper.make_node("GlobalMaxPool", ["spot"], ["peak"]),
        helper.make_node("Flatten", ["peak"], ["peak_flat"], axis=1),
        helper.make_node("ReduceMax", ["peak_flat"], ["worst"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["worst", "contrast"], ["margin"]),
        helper.make_node("Mul", ["margin", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [output_name]),
    ]
    return _model(nodes, [x], [y], inits, "dark_spot")
