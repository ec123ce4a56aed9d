"""The closed sets of choices an experiment config may name, as ``Literal`` types.

One torch-free module, so that the config, the model, the task code and the docs generator agree
on every allowed value; a config naming anything else is refused when it loads
(:mod:`uservec.training.config_schema`), before any data is read.
"""

from __future__ import annotations

from typing import Literal, get_args

#: raw data formats (training.data.loaders)
DataFormat = Literal[
    "movielens", "movielens-1m", "generic", "peterrec", "amazon-cdrib", "synthetic"
]
#: next-item loss of pretraining: full softmax or sampled softmax
PretrainLoss = Literal["full", "sampled"]
#: pretraining objective: next item, order-free held-out set, or chosen from the data's order
PretrainObjective = Literal["next_item", "set", "auto"]
#: how a pretraining corpus' items map onto the task dataset's (training.data.corpus)
CorpusMatch = Literal["title", "id"]
#: pretrained item embeddings at the start
PretrainItemInit = Literal["random", "svd"]
#: where training runs: CUDA when torch sees a GPU ("auto"), or the one named
DeviceName = Literal["auto", "cpu", "cuda"]
#: downstream task kinds: P2 profile attribute, P3 cross-domain cold start
TaskKind = Literal["profile", "cross_domain"]
#: what is trained on top of the pretrained encoder (training.task_network)
Method = Literal["adapter", "head-only", "fine-tune-all", "scratch"]
#: methods that leave the pretrained backbone frozen (one backbone object serves every task)
FrozenMethod = Literal["adapter", "head-only"]
#: where an adapter patch sits in a residual block
Placement = Literal["serial", "parallel"]
#: how a sequence's hidden states become one user vector (training.model.read_out)
Readout = Literal["last", "mean"]
#: P2 validation criterion
SelectMetric = Literal["macro_f1", "accuracy", "mean"]
#: P3 target-item table at the start of training
TaskItemInit = Literal["popularity", "pretrained", "probe"]
#: P2 head at the start of training
HeadInit = Literal["random", "probe"]

METHODS: tuple[Method, ...] = get_args(Method)
FROZEN_METHODS: tuple[FrozenMethod, ...] = get_args(FrozenMethod)
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)
READOUTS: tuple[Readout, ...] = get_args(Readout)
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
