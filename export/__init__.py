"""Export: fused torch model -> ONNX (+ int8) + FAISS indexes -> one versioned, checksummed bundle.

``verify`` and ``indexes`` are torch-free (the service imports them); the other modules import torch
and are used offline only. Importing this package imports nothing heavy.
"""


class ExportError(Exception):
    """An export step failed a check (parity, shapes, task metadata); the message says which."""
