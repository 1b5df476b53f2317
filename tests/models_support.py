"""Test helpers that build real model versions: a real ONNX model, a manifest, a registry entry.

The tiny CNN is built once per test session (cached) and shared, since every
version with the same input size can carry the same bytes.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from models.manifest import InputSpec, Manifest, OutputSpec, Thresholds, make_manifest
from models.onnx_build import tiny_cnn_bytes
from models.registry import Registry


@cache
def tiny_model(input_hw: tuple[int, int] = (64, 64), channels: int = 1) -> bytes:
    """The tiny real CNN (input "image", output "score"), built once per size."""
    return tiny_cnn_bytes(input_hw=tuple(input_hw), channels=channels)


def make_test_manifest(version: str = "1.0.0", model_bytes: bytes | None = None, input_hw=(64, 64),
                       thresholds=(0.3, 0.7), parent: str | None = None, roi=None, colour: str = "gray",
                       metrics: dict | None = None) -> tuple[Manifest, bytes]:
    """A manifest and the model bytes it describes (the tiny CNN unless model_bytes is given)."""
    channels = 1 if colour == "gray" else 3
    data = model_bytes if model_bytes is not None else tiny_model(tuple(input_hw), channels)
    h, w = input_hw
    spec = InputSpec("image", (1, channels, h, w), colour=colour, roi=tuple(roi) if roi is not None else None)
    manifest = make_manifest(version, data, spec, Thresholds(*thresholds), output=OutputSpec("score"),
                             parent=parent, metrics=metrics)
    return manifest, data


def build_version(registry_root: str | Path, version: str = "1.0.0", input_hw=(64, 64), thresholds=(0.3, 0.7),
                  model_bytes: bytes | None = None, parent: str | None = None, roi=None, set_current: bool = False,
                  colour: str = "gray") -> Path:
    """Write a complete registry version (manifest + model) via Registry.add; return its directory.

    ``model_bytes`` must take an input named "image" of shape (1, C, *input_hw) and give
    "score"; the builders in models.onnx_build do by default.
    """
    manifest, data = make_test_manifest(version, model_bytes, input_hw, thresholds, parent, roi, colour)
    registry = Registry(registry_root)
    path = registry.add(manifest, data)
    if set_current:
        registry.set_current(version, reason="test")
    return path
