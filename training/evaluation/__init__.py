"""How uservec measures: the protocols of docs/protocols.md, one responsibility per module.

* splits, computed once per run by :func:`plan.plan_evaluation` (typed, serialisable):
  :mod:`profile_split` (P2 labels, folds, low-label rows, inner folds, holdouts),
  :mod:`cross_domain_split` (P3 user partition, its data view, the published CDRIB split),
  :mod:`plan` (every split of a config, and the P1 pretraining view they imply),
  :mod:`feasibility` and :mod:`errors` (why a split cannot be made, said before any training),
  :mod:`bags` (event owners and binary user x item bags);
* metrics: :mod:`next_item` (P1), :mod:`classification` (P2), :mod:`ranking` (P3);
* :mod:`statistics` (mean ± spread, paired tests);
* evaluation paths every method reports through: :mod:`profile_eval` (P2),
  :mod:`ranking_eval` (P3);
* typed results with ``to_json()``: :mod:`profile_results`, :mod:`cross_domain_results`,
  :mod:`fit_summary`, :mod:`results`;
* :mod:`kinds`: the names (task kinds, methods, baselines, metrics, regimes) as ``Literal`` types.
"""
