"""Errors of model files: manifests, integrity, signatures and the registry.

    qcloop.errors.QcError
    └── ModelsError                a model version cannot be read, trusted or registered
        ├── ManifestError          manifest missing, not JSON, wrong schema, bad field (named)
        ├── IntegrityError         the model file's size or sha256 differs from the manifest
        ├── SignatureError         signature missing, malformed or not valid for the key
        ├── VersionError           a version is older than the running one, or unknown
        └── RegistryError          the on-disk registry is unusable (no current, bad layout)
"""
from qcloop.errors import QcError


class ModelsError(QcError):
    """A model version cannot be read, trusted or registered."""


class ManifestError(ModelsError):
    """Manifest missing, not JSON, wrong schema, or a bad field (named in the message)."""


class IntegrityError(ModelsError):
    """The model file's size or sha256 differs from the manifest."""


class SignatureError(ModelsError):
    """Signature missing, malformed, or not valid for the key."""


class VersionError(ModelsError):
    """A version is older than the running one, or unknown."""


class RegistryError(ModelsError):
    """The on-disk registry is unusable."""
