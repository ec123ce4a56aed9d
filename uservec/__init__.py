"""uservec contract: the torch-free pieces that training, export and serving must agree on.

Everything here is imported by all three halves of the project (training/, export/, service/), so
the vocabulary, reserved ids, sequence encoding and bundle manifest cannot drift apart between the
offline and the online side. Nothing in this package may import torch.
"""

__version__ = "0.2.0"
