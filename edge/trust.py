"""Which models the edge will run: one rule, checked at every load, not only when a model is announced.

With ``[model].public_key`` set, a model is loaded only when its manifest carries the trainer's
valid Ed25519 signature (models.signing) -- at start, when ``CURRENT`` is flipped or rolled back
on disk, when a shadow candidate is loaded, and when a new one is announced -- so an edited
``manifest.json`` (thresholds 0.999 / 1.0, say) is refused even though it is already in the local
registry. The unsigned built-in model is accepted by its pinned hash only (models.builtin).
Without a public key, the local registry is trusted as it stands and an announced model needs
``allow_unsigned`` (never in production).
"""

from __future__ import annotations

from pathlib import Path

from models import builtin
from models.errors import ModelsError
from models.manifest import Manifest


class ModelTrust:
    def __init__(self, public_key_path: Path | None, allow_unsigned: bool = False):
        self.public_key = None
        if public_key_path is not None:
            from models.signing import load_public_key

            self.public_key = load_public_key(public_key_path)
        self.allow_unsigned = allow_unsigned

    def check_announced(self, manifest: Manifest) -> None:
        """Raise ModelsError (SignatureError) unless an announced model may be fetched and installed."""
        if self.public_key is None and not self.allow_unsigned:
            raise ModelsError(
                f"model {manifest.version} refused: no public key configured to verify it "
                f"([model].public_key), and allow_unsigned is false"
            )
        self._verify(manifest)

    def check_stored(self, manifest: Manifest) -> None:
        """Raise ModelsError (SignatureError) unless a model already in the local registry may be loaded."""
        self._verify(manifest)

    def _verify(self, manifest: Manifest) -> None:
        if self.public_key is None or builtin.is_builtin(manifest):
            return
        from models.signing import verify

        verify(manifest, self.public_key)
