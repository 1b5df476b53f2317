"""Ed25519 signatures over model manifests.

The trainer signs ``Manifest.canonical_bytes()`` (the manifest without its signature)
with its private key; edges verify with the trainer's public key before loading a
model. Keys are raw 32-byte Ed25519 keys stored base64-encoded, one per file; the
private key file is created with mode 0600 and never belongs in the repository.
"""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.errors import SignatureError
from models.manifest import Manifest


def generate_keypair(private_path: str | Path, public_path: str | Path, overwrite: bool = False) -> None:
    """Write a new key pair: the private key 0600, the public key world-readable."""
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.exists() and not overwrite:
        raise SignatureError(f"{private_path} exists; refusing to replace a signing key (use --force)")
    key = Ed25519PrivateKey.generate()
    raw_private = key.private_bytes_raw()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(raw_private) + b"\n")
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(base64.b64encode(key.public_key().public_bytes_raw()) + b"\n")


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_read_key(path, "private"))


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_read_key(path, "public"))


def sign(manifest: Manifest, key: Ed25519PrivateKey) -> Manifest:
    signature = key.sign(manifest.canonical_bytes())
    return manifest.with_signature(base64.b64encode(signature).decode())


def verify(manifest: Manifest, key: Ed25519PublicKey) -> None:
    """Raise SignatureError unless the manifest carries a valid signature for this key."""
    if not manifest.signature:
        raise SignatureError(f"model {manifest.version} is unsigned")
    try:
        raw = base64.b64decode(manifest.signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"model {manifest.version}: signature is not base64") from exc
    try:
        key.verify(raw, manifest.canonical_bytes())
    except InvalidSignature as exc:
        raise SignatureError(f"model {manifest.version}: signature does not match the manifest "
                             f"(tampered, or signed by another key)") from exc


def _read_key(path: str | Path, what: str) -> bytes:
    try:
        raw = base64.b64decode(Path(path).read_bytes().strip(), validate=True)
    except OSError as exc:
        raise SignatureError(f"cannot read {what} key {path}: {exc}") from exc
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what} key {path} is not base64") from exc
    if len(raw) != 32:
        raise SignatureError(f"{what} key {path} is not a raw 32-byte Ed25519 key")
    return raw
