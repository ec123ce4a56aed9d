from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from data_helpers import build_dataset, random_cross_domain

from uservec.contract.ids import PAD_ID
from uservec.contract.sequences import encode_batch
from uservec.training.baselines.cooccurrence import popularity_scorer
from uservec.training.baselines.logistic import LogisticPredictor
from uservec.training.baselines.ridge import LAMBDA_GRID, ridge_scorer
from uservec.training.baselines.tfidf import user_item_matrix
from uservec.training.evaluation.cross_domain_split import cross_domain_split
from uservec.training.evaluation.profile_eval import evaluate_profile
from uservec.training.evaluation.profile_split import profile_folds, profile_labels
from uservec.training.evaluation.ranking_eval import evaluate_cross_domain
from uservec.training.model import NextItNet
from uservec.training.probe.cross_domain import (
    VectorLookup,
    bag_plus_vector_family,
    probe_cross_domain,
    source_vectors,
)
from uservec.training.probe.profile import BagPlusVectorProbe, probe_attribute
from uservec.training.probe.readouts import frozen_vectors
from uservec.training.probe.run import ProbeReport
from uservec.training.probe.table import probe_table


def probe_kind(vectors, dataset, low_label: bool = False):
    """probe_attribute on the "kind" attribute's P2 folds (optionally low-label)."""
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels, low_label=low_label)
    return probe_attribute(vectors, dataset, labels, folds)


def as_json(rows):
    return {name: row.to_json() for name, row in rows.items()}


def report(tasks=None, cross_domain=None, low_label=None) -> ProbeReport:
    return ProbeReport("run", 8, tasks or {}, cross_domain or {}, low_label)


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


def noise_dataset(num_users: int = 60, on_topic: float = 0.0, seed: int = 0):
    """Labelled users whose items follow the label with probability ``on_topic`` (else noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["x", "y"], num_users, p=[0.6, 0.4])
    events = []
    for user, label in enumerate(labels, start=1):
        for _ in range(8):
            topical = rng.random() < on_topic
            item = (0 if label == "x" else 10) + rng.integers(0, 10) if topical else \
                rng.integers(0, 20)
            events.append((user, int(item)))
    users, items = zip(*events, strict=True)
    frame = pd.DataFrame({"kind": labels}, index=np.arange(1, num_users + 1))
    return build_dataset(users, items, users=frame)


def fold_predictions(predict, dataset) -> list[np.ndarray]:
    labels = profile_labels(dataset, "kind")
    out: list[np.ndarray] = []

    def capture(fold):
        out.append(np.asarray(predict(fold)))
        return out[-1]

    evaluate_profile(capture, labels, profile_folds(labels.users, labels.labels))
    return out


@pytest.mark.parametrize("balanced", [False, True])
def test_a_constant_vector_adds_nothing_to_the_bag(balanced: bool) -> None:
    dataset = noise_dataset(on_topic=0.8)
    constant = np.full((dataset.num_users, 4), 3.0)
    plus = BagPlusVectorProbe(user_item_matrix(dataset), constant, balanced)
    bag = LogisticPredictor(user_item_matrix(dataset), balanced)
    for a, b in zip(fold_predictions(plus, dataset), fold_predictions(bag, dataset), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_informative_vector_lifts_a_bag_that_carries_nothing() -> None:
    dataset = noise_dataset(on_topic=0.0)
    labels = profile_labels(dataset, "kind")
    truth = np.zeros(dataset.num_users)
    truth[labels.users] = (labels.labels == "y").astype(float)
    vectors = np.stack([truth, np.random.default_rng(1).normal(size=dataset.num_users)], axis=1)
    rows = probe_kind({"mean": vectors}, dataset)
    result = as_json(rows)
    assert set(result) == {"majority", "mean", "tfidf", "tfidf+mean"}
    assert result["tfidf+mean"]["lr_accuracy"]["mean"] > 0.95
    assert result["tfidf"]["lr_accuracy"]["mean"] < 0.8
    gain = result["tfidf+mean"]["minus_tfidf"]["lr_accuracy"]
    assert len(gain["per_fold"]) == 5 and gain["wins"] >= 4
    assert "+" in probe_table(report({"kind": rows}))  # the gain column is rendered


def test_low_label_probe_reads_a_tenth_of_the_labels_against_the_majority_floor() -> None:
    dataset = noise_dataset(num_users=300, on_topic=0.0)
    labels = profile_labels(dataset, "kind")
    truth = np.zeros(dataset.num_users)
    truth[labels.users] = (labels.labels == "y").astype(float)
    vectors = np.stack([truth, np.random.default_rng(1).normal(size=dataset.num_users)], axis=1)
    low_rows = probe_kind({"mean": vectors}, dataset, low_label=True)
    full_rows = probe_kind({"mean": vectors}, dataset)
    low = as_json(low_rows)
    share_x = float(np.mean(labels.labels == "x"))
    # the floor: every test user gets the majority label "x"
    assert low["majority"]["lr_accuracy"]["mean"] == pytest.approx(share_x, abs=0.01)
    assert low["majority"]["lr_bal_macro_f1"]["mean"] < 0.4
    # 24 labelled users per fold are enough for a vector that *is* the label...
    assert low["mean"]["lr_accuracy"]["mean"] > 0.95
    # ...while the bag of noise items reads nothing from them
    assert low["tfidf"]["lr_accuracy"]["mean"] < share_x + 0.1
    table = probe_table(report({"kind": full_rows}, low_label={"kind": low_rows}))
    assert "| kind, 10% labels | majority |" in table and "| kind | mean |" in table


def test_cross_domain_probe_fits_ridge_on_frozen_source_vectors() -> None:
    dataset = random_cross_domain(num_users=200, items_per_domain=12, seed=0)
    split = cross_domain_split(dataset, "T")
    torch.manual_seed(0)
    encoder = NextItNet(dataset.vocab.size, 16, (1, 2)).eval()
    rows = probe_cross_domain(encoder, split, max_len=16)
    result = as_json(rows)
    assert set(result) == {"ridge", "ridge-on-mean", "ridge-on-bag+mean", "ridge-on-item-mean"}
    for name, scores in result.items():
        assert scores["lambda"] in LAMBDA_GRID, name
        assert 0.0 <= scores["ndcg"]["mean"] <= 1.0
    assert result["ridge-on-mean"]["minus_ridge"]["users"] == split.test_users.size
    # a random projection of the source items still carries the user's taste
    popular = evaluate_cross_domain(popularity_scorer(split), split)
    assert result["ridge-on-item-mean"]["ndcg"]["mean"] > popular["ndcg@10"]["mean"] + 0.05
    # appending the vector to the bag keeps the bag's signal
    assert result["ridge-on-bag+mean"]["ndcg"]["mean"] > popular["ndcg@10"]["mean"] + 0.05
    table = probe_table(report(cross_domain={"T": rows}))
    assert "ridge-on-item-mean" in table and "Wilcoxon" in table


def test_source_vectors_ignore_target_events_and_refuse_unknown_users() -> None:
    dataset = random_cross_domain(num_users=60, items_per_domain=12, seed=1)
    split = cross_domain_split(dataset, "T")
    torch.manual_seed(0)
    encoder = NextItNet(dataset.vocab.size, 8, (1, 2)).eval()
    lookup = source_vectors(encoder, split, 16, "mean")
    users = split.train_users[:4]
    sources = [split.source_sequence(int(u)) for u in users]
    expected = frozen_vectors(encoder, encode_batch(sources, 16), "mean")
    np.testing.assert_allclose(lookup(users), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError):
        lookup(np.array([dataset.num_users + 5]))


def test_bag_plus_a_constant_vector_scores_like_the_ridge_baseline() -> None:
    """A constant vector standardises to zeros: the appended block changes no score."""
    dataset = random_cross_domain(num_users=120, items_per_domain=12, seed=2)
    split = cross_domain_split(dataset, "T")
    users = np.unique(np.concatenate([split.train_users, split.test_users]))
    constant = VectorLookup(users, np.full((users.size, 4), 2.5))
    plus = bag_plus_vector_family(constant)(split)(10.0)(split.test_users)
    np.testing.assert_allclose(plus, ridge_scorer(split, 10.0)(split.test_users), atol=1e-8)
