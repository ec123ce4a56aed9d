"""Logging rules the CLI and the service share (both import this torch-free package)."""

from __future__ import annotations

import logging


def quiet_third_party(level: int) -> None:
    """Keep import-time chatter of third-party libraries out of logs unless debugging.

    FAISS logs every instruction set it tries when it is imported (ten lines of
    ModuleNotFoundError on a CPU without AVX-512): noise for anyone but a FAISS developer.
    """
    logging.getLogger("faiss").setLevel(level if level <= logging.DEBUG else logging.WARNING)
