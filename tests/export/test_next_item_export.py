"""The exported next-item head, served, reproduces the P1 metric of the torch model.

P1 (docs/protocols.md#p1-next-item-prediction) ranks every item and keeps the user's own: served
without exclusions on a one-domain vocabulary, the service's ranking must give the same rank to
every test target, hence the same HR@10 and NDCG@10.
"""

from __future__ import annotations

import numpy as np
import torch

from uservec.contract.ids import NUM_RESERVED, PAD_ID, item_key
from uservec.contract.manifest import read_manifest
from uservec.contract.vocab import Vocabulary
from uservec.export.bundle import write_bundle
from uservec.service.engine import load_bundle
from uservec.service.next_item import next_item_head
from uservec.training.evaluation.next_item import metrics_from_ranks, rank_of_targets
from uservec.training.fused import FusedUserModel
from uservec.training.model import NextItemHead, NextItNet

MAX_LEN, DIM = 8, 16


def test_served_next_item_ranking_reproduces_p1(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary(tuple(item_key(str(i), "items") for i in range(60)))
    encoder = NextItNet(vocab.size, DIM, (1, 2), 3).eval()
    head = NextItemHead(DIM, vocab.size).eval()
    rng = np.random.default_rng(0)
    inputs = rng.integers(NUM_RESERVED, vocab.size, size=(40, MAX_LEN))
    inputs[::3, :3] = PAD_ID  # some shorter histories
    targets = rng.integers(NUM_RESERVED, vocab.size, size=40)
    with torch.no_grad():
        scores = head(encoder.user_vector(torch.from_numpy(inputs)))
    p1 = rank_of_targets(scores, torch.from_numpy(targets)).numpy()

    write_bundle(tmp_path / "b", FusedUserModel(encoder, {}, {}), vocab, [], {"name": "p1"},
                 "fp", 0, MAX_LEN, inputs, next_item=(head.output.weight, head.output.bias))
    assert read_manifest(tmp_path / "b").model.next_item_file == "next_item.npy"
    bundle = load_bundle(tmp_path / "b")
    served = next_item_head(bundle)
    assert served is not None
    ranks = []
    for row, target in zip(inputs, targets, strict=True):
        vector = bundle.run([row[row != PAD_ID]])[0]["user_vector"]
        ranking = [key for key, _ in served.rank(vector, "items", set(), vocab.size)]
        ranks.append(ranking.index(vocab.key_of(int(target))))
    assert ranks == p1.tolist()
    assert metrics_from_ranks(np.array(ranks), 10) == metrics_from_ranks(p1, 10)
