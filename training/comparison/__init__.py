"""Every method beside the baselines on one task's protocol split, then the task's final model.

:mod:`profile` (P2) and :mod:`cross_domain` (P3) train each method of ``adapt.methods``
through task training (:mod:`training.profile_task`, :mod:`training.cross_domain_task`), score it
through the evaluation path every baseline uses (:mod:`training.evaluation`) and compare them
pairwise; :mod:`final` saves the one model per task that export reads.
"""
