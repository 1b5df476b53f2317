"""The built-in default model that a new edge starts with (files in models/default/).

It is produced by ``qc train default-model`` from the synthetic part generator,
reproducibly, and stays small. ``install_into`` copies it into an edge's local
registry as its first version.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from models.errors import RegistryError
from models.manifest import Manifest, load_manifest
from models.registry import Registry

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
#: sha256 of the built-in manifest's signed form (Manifest.canonical_bytes, which holds the model file's
#: sha256): the built-in model is unsigned, so an edge that verifies signatures accepts it by this pin
#: only. `qc train default-model` prints the new pin; a test fails until it is written here.
PINNED_SHA256 = "3d239b7c685f89d83b94fcdbe74746fe69f83caaa714cd7b2bc4647fdcb7d033"


def is_builtin(manifest: Manifest) -> bool:
    """True when ``manifest`` is exactly the built-in model's (its pinned hash), not an edited copy."""
    return hashlib.sha256(manifest.canonical_bytes()).hexdigest() == PINNED_SHA256


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
