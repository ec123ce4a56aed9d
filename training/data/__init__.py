"""Data layer: real formats -> one prepared on-disk representation (see ``dataset.py``)."""
