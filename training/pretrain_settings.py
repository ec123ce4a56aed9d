"""The ``[pretrain]`` and ``[pretrain.corpus]`` config sections (re-exported by
:mod:`uservec.training.config`, which documents the config as a whole)."""

from __future__ import annotations

from dataclasses import dataclass

from uservec.training.choices import (
    CorpusMatch,
    DataFormat,
    DeviceName,
    PretrainItemInit,
    PretrainLoss,
    PretrainObjective,
)
from uservec.training.config_schema import (
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    Section,
    setting,
)


@dataclass(frozen=True)
class CorpusConfig(Section):
    """Pretraining on another population (``[pretrain.corpus]``): more users than labels.

    The corpus' items map onto the task dataset's catalogue
    (docs/protocols.md#p2-on-movielens-1m-and-transfer-to-movielens-100k); its users join
    pretraining, and its labelled users join the pooled bag baselines and, with ``aux_weight``
    > 0, train auxiliary heads beside the pretraining objective.
    """

    #: raw format of the corpus (README.md#data)
    format: DataFormat
    #: the corpus folder or interactions file (required)
    path: str
    #: generic: optional users file of the corpus
    users_path: str | None = None
    #: how corpus items map onto the task's: "title" (normalised title + year, MovieLens) or
    #: "id" (equal raw item ids)
    by: CorpusMatch = "title"
    #: pretrain on the task dataset's users too (transductive for P2, as without a corpus);
    #: false = the backbone never sees the task population's behaviour
    include_task_users: bool = True
    #: profile tasks (by name) whose attribute the corpus users file has with the same meaning:
    #: they get the pooled baselines (lr_pooled, lr_bal_pooled) and, with aux_weight > 0, an
    #: auxiliary head in pretraining
    label_tasks: tuple[str, ...] = ()
    #: weight of the auxiliary heads' cross-entropy (corpus users' labels) beside the
    #: pretraining objective; 0 = unsupervised corpus. Needs the set objective
    aux_weight: float = setting(0.0, NON_NEGATIVE)

    SECTION = "pretrain.corpus"


@dataclass(frozen=True)
class PretrainConfig(Section):
    """Self-supervised next-item pretraining."""

    #: most epochs
    epochs: int = setting(20, POSITIVE)
    #: windows per batch
    batch_size: int = setting(32, POSITIVE)
    #: Adam learning rate
    lr: float = setting(2e-3, POSITIVE)
    #: Adam (L2) weight decay
    weight_decay: float = setting(0.0, NON_NEGATIVE)
    #: gradient norm clip (0 = none)
    grad_clip: float = setting(1.0, NON_NEGATIVE)
    #: full softmax over the vocabulary, or sampled softmax
    loss: PretrainLoss = "full"
    #: sampled softmax: negatives per batch
    num_negatives: int = setting(256, POSITIVE)
    #: epochs without validation improvement before stopping
    patience: int = setting(3, POSITIVE)
    #: stop early when the wall clock passes this many seconds (0 = no limit)
    max_seconds: float = setting(0.0, NON_NEGATIVE)
    #: torch intra-op threads while pretraining and fitting tasks (0 = torch's default, one per
    #: core). 1 by default: on cores shared with other jobs, multi-threaded ops spin-wait and ran
    #: 3-5x slower (ML-100K)
    num_threads: int = setting(1, NON_NEGATIVE)
    #: where pretraining and task training run: "auto" (CUDA when torch sees a GPU, else the
    #: CPU), "cpu" or "cuda". On CUDA the forward passes use bf16 autocast where the GPU supports
    #: it; on the CPU results are those of a device-unaware run. Command line: --device
    device: DeviceName = "auto"
    #: weight of the user-level bag objective (training.objectives.bag_loss) added to the
    #: next-item loss; 0 = plain NextItNet. Meant to make the mean readout a long-term taste
    #: summary; at 1.0 it did not help on ML-100K, item_init = "svd" did
    #: (docs/analysis.md#why-the-profile-tasks-lose)
    bag_weight: float = setting(0.0, NON_NEGATIVE)
    #: item embeddings at the start: "random" (normal) or "svd" (the item factors of a truncated
    #: SVD of the users' TF-IDF item bags over training events: training.pretrain.svd_item_init)
    item_init: PretrainItemInit = "random"
    #: length of the windows histories are cut into for next-item training (0 = model.max_len).
    #: The encoder has no positional embeddings, so it reads longer inputs (model.max_len, what
    #: tasks, export and serving use) as well as the windows it trained on: short windows train
    #: faster, and a mean readout over a long window summarises more of a user's taste
    window: int = setting(0, NON_NEGATIVE)
    #: "next_item" (NextItNet), "set" (random-permutation windows: every position predicts a
    #: held-out subset of the user's items; for data without a time order) or "auto" ("set" when
    #: the source has no timestamps or most events tie with their predecessor:
    #: training.data.time_order)
    objective: PretrainObjective = "next_item"
    #: set objective: share of a window's events held out as its target set
    set_holdout: float = setting(0.2, OPEN_FRACTION)
    #: set objective: most held-out targets per window
    set_max_targets: int = setting(20, POSITIVE)
    #: another population to pretrain on (absent = the task dataset's users only)
    corpus: CorpusConfig | None = None

    SECTION = "pretrain"
