"""The closed vocabularies of evaluation as ``Literal`` types: a typo is a type error, not a key.

Each literal has its tuple of values beside it (``get_args``), in the order reports list them.
"""

from __future__ import annotations

from typing import Literal, get_args

#: what a task predicts: a user attribute (P2) or the items of an unseen domain (P3)
TaskKind = Literal["profile", "cross_domain"]
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)

#: how a task network is trained on the pretrained encoder (PROTOCOLS.md, "Methods compared")
Method = Literal["adapter", "head-only", "fine-tune-all", "scratch"]
METHODS: tuple[Method, ...] = get_args(Method)

#: the simple baselines every method is read against
ProfileBaseline = Literal["majority", "lr", "lr_bal"]
PROFILE_BASELINES: tuple[ProfileBaseline, ...] = get_args(ProfileBaseline)
CrossDomainBaseline = Literal["popularity", "cooc", "ridge"]
CROSS_DOMAIN_BASELINES: tuple[CrossDomainBaseline, ...] = get_args(CrossDomainBaseline)

#: P2 metrics, in report order
ProfileMetric = Literal["accuracy", "macro_f1"]
PROFILE_METRICS: tuple[ProfileMetric, ...] = get_args(ProfileMetric)

#: P2 label regimes: every training-fold label, or a stratified 10% of them
Regime = Literal["full", "low_label"]
REGIMES: tuple[Regime, ...] = get_args(Regime)
