"""Errors of the edge runtime.

    qcloop.errors.QcError
    └── EdgeError                  the inspection runtime cannot do what was asked
        ├── ModelError             a model cannot be loaded or run
        │   ├── ModelMismatchError the model's input/output does not match its manifest or the frames
        │   └── InferenceError     a run failed or produced a non-finite / out-of-range score
        └── OutboxError            the local review outbox cannot store or read an item
            └── OutboxFullError    the outbox is at its byte limit and nothing can be evicted

Model files themselves (manifest, hash, registry) raise models.errors.ModelsError.
"""

from qcloop.errors import QcError


class EdgeError(QcError):
    """The inspection runtime cannot do what was asked."""


class ModelError(EdgeError):
    """A model cannot be loaded or run."""


class ModelMismatchError(ModelError):
    """The model's input or output does not match its manifest or the frames."""


class InferenceError(ModelError):
    """A run failed or produced a non-finite or out-of-range score."""


class OutboxError(EdgeError):
    """The local review outbox cannot store or read an item."""


class OutboxFullError(OutboxError):
    """The outbox is at its byte limit and nothing can be evicted."""
