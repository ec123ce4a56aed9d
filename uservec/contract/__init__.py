"""The contract: the torch-free pieces that training, export and serving must agree on.

Reserved ids, domain-namespaced item keys, the vocabulary, sequence encoding, the profile
decision rule, the bundle manifest and bundle verification. Training, export and the service all
import this package, so these cannot drift apart between the offline and the online side. Nothing
here may import torch or any other layer of uservec (tests/test_layers.py checks it).
"""
