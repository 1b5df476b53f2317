"""Manifests are signed with Ed25519; a tampered, unsigned or foreign-signed manifest is refused."""
import dataclasses
import stat

import pytest

from models.errors import SignatureError
from models.manifest import load_manifest
from models.signing import generate_keypair, load_private_key, load_public_key, sign, verify
from tests.models_support import build_version


@pytest.fixture
def keys(tmp_path):
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    return load_private_key(tmp_path / "k.key"), load_public_key(tmp_path / "k.pub")


def manifest(tmp_path):
    return load_manifest(build_version(tmp_path / "reg", "1.0.0") / "manifest.json")


def test_signed_manifest_verifies(tmp_path, keys):
    signed = sign(manifest(tmp_path), keys[0])
    verify(signed, keys[1])


def test_tampered_threshold_breaks_the_signature(tmp_path, keys):
    signed = sign(manifest(tmp_path), keys[0])
    bad = dataclasses.replace(signed, thresholds=dataclasses.replace(signed.thresholds, reject_above=0.99))
    with pytest.raises(SignatureError, match="does not match"):
        verify(bad, keys[1])


def test_unsigned_and_foreign_signed_are_refused(tmp_path, keys):
    m = manifest(tmp_path)
    with pytest.raises(SignatureError, match="unsigned"):
        verify(m, keys[1])
    generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    with pytest.raises(SignatureError, match="does not match"):
        verify(sign(m, load_private_key(tmp_path / "other.key")), keys[1])


def test_private_key_is_owner_only_and_never_overwritten(tmp_path, keys):
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    with pytest.raises(SignatureError, match="refusing to replace"):
        generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
