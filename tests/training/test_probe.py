from __future__ import annotations

import numpy as np
import pytest
import torch

from training.model import NextItNet
from training.probe import frozen_vectors
from uservec.ids import PAD_ID


def test_frozen_readouts_match_the_encoder_and_its_embeddings() -> None:
    torch.manual_seed(0)
    encoder = NextItNet(32, 8, (1, 2)).eval()
    items = np.array([[PAD_ID, PAD_ID, 5, 6], [7, 8, 9, 10]], dtype=np.int64)
    batch = torch.from_numpy(items)
    with torch.no_grad():
        np.testing.assert_allclose(frozen_vectors(encoder, items, "last"),
                                   encoder.user_vector(batch).numpy(), rtol=1e-6)
        np.testing.assert_allclose(frozen_vectors(encoder, items, "mean"),
                                   encoder.user_vector(batch, readout="mean").numpy(), rtol=1e-6)
        first = encoder.embedding(torch.tensor([5, 6])).mean(0).numpy()
    np.testing.assert_allclose(frozen_vectors(encoder, items, "item-mean")[0], first, rtol=1e-6)
    with pytest.raises(ValueError, match="readout"):
        frozen_vectors(encoder, items, "max")
