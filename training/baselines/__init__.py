"""The simple baselines of docs/protocols.md, one module each.

A neural method is only interesting if it beats these on the same folds and users, so the
baselines follow the protocols to the letter and fit nothing on test users:

* P2: :mod:`majority` (the most frequent training label), :mod:`logistic` (``lr`` and ``lr_bal``:
  logistic regression on the TF-IDF item bags of :mod:`tfidf`), run together by :mod:`profile`;
* P3: :mod:`cooccurrence` (``popularity`` and ``cooc``) and :mod:`ridge`, run together by
  :mod:`cross_domain`.
"""
