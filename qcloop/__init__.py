"""qcloop: shared contracts (wire format, config loading, base errors) and the `qc` command.

This package is the bottom layer: the edge, the station and the trainer import its
contracts. Importing it never imports numpy, onnxruntime, Flask or torch.
"""
__version__ = "0.1.0"
