"""Errors of the retraining side: datasets, training, export and calibration.

    qcloop.errors.QcError
    └── TrainingError              the retraining server cannot do what was asked
        ├── DatasetError           a data source is missing, unreadable, empty or one-class (named)
        ├── TrainError             training cannot start or diverged (bad options, NaN loss)
        ├── ExportError            the model cannot be exported to ONNX
        │   └── ParityError        onnxruntime and PyTorch disagree on real images beyond tolerance
        ├── CalibrationError       thresholds cannot be chosen (no scores, one class, bad budget)
        ├── GateError              a model cannot be scored on the golden set
        └── ReleaseError           a model cannot be signed, registered, served or announced

Model files (manifest, registry) raise models.errors.ModelsError. Library errors
(torch, onnx, onnxruntime, OpenCV) are translated at the boundary with ``raise ... from exc``.
"""
from qcloop.errors import QcError


class TrainingError(QcError):
    """The retraining server cannot do what was asked."""


class DatasetError(TrainingError):
    """A data source is missing, unreadable, empty or holds only one class."""


class TrainError(TrainingError):
    """Training cannot start (bad options) or diverged."""


class ExportError(TrainingError):
    """The model cannot be exported to ONNX."""


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree on real images by more than the tolerance."""


class CalibrationError(TrainingError):
    """Thresholds cannot be chosen from the given scores."""


class GateError(TrainingError):
    """A model cannot be scored on the golden set (unloadable, wrong input, empty golden set)."""


class ReleaseError(TrainingError):
    """A model cannot be signed, registered, served or announced."""
