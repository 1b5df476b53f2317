"""The built-in default model that a new edge starts with (files in models/default/).

It is produced by ``qc train default-model`` from the synthetic part generator,
reproducibly, and stays small. ``install_into`` copies it into an edge's local
registry as its first version.
"""
from __future__ import annotations

from pathlib import Path

from models.errors import RegistryError
from models.manifest import load_manifest
from models.registry import Registry

DEFAULT_DIR = Path(__file__).resolve().parent / "default"


def available() -> bool:
    return (DEFAULT_DIR / "manifest.json").is_file()


def install_into(registry: Registry) -> str:
    """Add the built-in model to the registry (if missing) and make it current; return its version."""
    if not available():
        raise RegistryError(f"no built-in model in {DEFAULT_DIR}: build it with `qc train default-model`")
    manifest = load_manifest(DEFAULT_DIR / "manifest.json")
    if manifest.version not in registry.versions():
        registry.add(manifest, (DEFAULT_DIR / manifest.file).read_bytes())
    registry.set_current(manifest.version, reason="built-in model installed")
    return manifest.version
