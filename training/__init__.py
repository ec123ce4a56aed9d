"""Offline half of uservec (PyTorch): data preparation, pretraining, task adapters, evaluation."""
