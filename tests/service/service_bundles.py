"""Real bundles for the service tests: a tiny random NextItNet exported through ``write_bundle``.

Torch is used here (test side only, imported lazily) to build and export the model; the service
under test never imports it. Two domains, ``books`` and ``games``; raw item ids are ``b<i>`` /
``g<i>``. Exporting costs seconds, so the conftest reuses bundles until :func:`bundle_source_hash`
changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from uservec.contract.ids import NUM_RESERVED, PAD_ID, item_key
from uservec.contract.vocab import Vocabulary

DIM, MAX_LEN, N_ITEMS = 16, 8, 62  # vocabulary 64 with the reserved ids
BOOKS, GAMES = "books", "games"
GENDER_LABELS = ("F", "M")
#: gender carries a training label prior (decision prior_adjusted), age does not (older bundles)
GENDER_PRIOR = (0.3, 0.7)
AGE_LABELS = tuple(f"a{i}" for i in range(7))


def raw_id(position: int) -> tuple[str, str]:
    """(domain, raw id) of the position-th real item: even = books, odd = games."""
    return (BOOKS, f"b{position}") if position % 2 == 0 else (GAMES, f"g{position}")


def make_vocab() -> Vocabulary:
    return Vocabulary(tuple(item_key(i, d) for d, i in map(raw_id, range(N_ITEMS))))


def _domain_keys(vocab: Vocabulary, domain: str) -> tuple[str, ...]:
    return tuple(key for key in vocab.keys if key.startswith(f"{domain}::"))


def _randomize(model: Any, seed: int) -> None:
    """Random weights everywhere (fresh patches are identity): every head differs from the rest."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def calibration_items(vocab: Vocabulary, n: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.full((n, MAX_LEN), PAD_ID, dtype=np.int64)
    for row in range(n):
        length = int(rng.integers(1, MAX_LEN + 1))
        out[row, MAX_LEN - length :] = rng.integers(NUM_RESERVED, vocab.size, size=length)
    return out


def build_bundle(out_dir: Path, *, seed: int = 0, two_domains: bool = True,
                 next_item: bool = False) -> Path:
    """Export a bundle: profile heads gender (adapter) + age (head-only), recommend games
    (from books) and, with ``two_domains``, books (from games)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs are 10x slower with threads on a busy machine
    try:
        _export(out_dir, seed, two_domains, next_item)
    finally:
        torch.set_num_threads(threads)
    return out_dir


def _export(out_dir: Path, seed: int, two_domains: bool, next_item: bool) -> None:
    import torch

    from uservec.export.bundle import TaskExport, write_bundle
    from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
    from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet

    vocab = make_vocab()
    torch.manual_seed(seed)
    encoder = NextItNet(vocab.size, DIM, (1, 2, 1, 2), kernel_size=3)
    encoder.add_task("gender", bottleneck=4)
    encoder.add_task("games", bottleneck=4)
    domain_ids = vocab.domain_ids()
    keep = {d: torch.from_numpy(domain_ids == vocab.domains().index(d)) for d in (BOOKS, GAMES)}
    games, books = _domain_keys(vocab, GAMES), _domain_keys(vocab, BOOKS)
    recommend = {"games": RecommendTask(ItemScoringHead(DIM, len(games)), "games", keep[BOOKS])}
    tasks = [
        TaskExport("gender", "profile", labels=GENDER_LABELS, class_prior=GENDER_PRIOR,
                   prior_power=1.0),
        TaskExport("age", "profile", labels=AGE_LABELS),
        TaskExport("games", "recommend", domain=GAMES, source_domains=(BOOKS,), item_keys=games,
                   popularity=games[::-1]),
    ]
    if two_domains:
        recommend["books"] = RecommendTask(ItemScoringHead(DIM, len(books)), None, keep[GAMES])
        tasks.append(TaskExport("books", "recommend", domain=BOOKS, source_domains=(GAMES,),
                                item_keys=books, popularity=books))
    fused = FusedUserModel(
        encoder,
        {
            "gender": ProfileTask(ClassificationHead(DIM, len(GENDER_LABELS)), "gender"),
            "age": ProfileTask(ClassificationHead(DIM, len(AGE_LABELS)), None),
        },
        recommend,
    )
    _randomize(fused, seed)
    head = torch.nn.Linear(DIM, vocab.size)  # the pretrained next-item head's shape
    write_bundle(
        out_dir, fused.eval(), vocab, tasks, {"name": f"svc-test-{seed}"}, f"fp-{seed}", seed,
        MAX_LEN, calibration_items(vocab, seed=seed), name=f"svc-test-{seed}",
        next_item=(head.weight, head.bias) if next_item else None,
    )


# --- bundle cache: exporting costs seconds, so bundles are reused until the code they come from
# changes (the key hashes every source file that shapes a bundle, this one included)
_BUNDLE_SOURCES = ("export", "training/model.py", "training/fused.py", "training/streaming.py",
                   "uservec",
                   "tests/service/service_bundles.py")


def bundle_source_hash(repo: Path) -> str:
    digest = hashlib.sha256()
    for source in _BUNDLE_SOURCES:
        path = repo / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(repo).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
