"""``uservec probe RUN_DIR``: does the frozen pretrained encoder carry a profile signal at all?

A linear probe fits the P2 logistic-regression baselines (``lr``: accuracy-tuned, ``lr_bal``:
class-balanced, macro-F1-tuned; C by inner CV; same folds, same evaluation code) on *frozen*
user vectors instead of TF-IDF item bags, one readout at a time:

* ``last``: the encoder state after the newest event (the next-item query);
* ``mean``: the encoder states averaged over the window's events (:func:`training.model.read_out`);
* ``item-mean``: the average of the window's input item embeddings (no convolution at all);
* ``tfidf-svd``: not the encoder: a truncated SVD (as many dimensions as the encoder's width) of
  every user's whole TF-IDF item bag, a classic unsupervised user vector of the same size, fit
  on every user's behaviour without labels like pretraining. It shows how much a vector of that
  size *could* carry.
* ``tfidf+mean``: the baselines' own TF-IDF bag with the standardised ``mean`` vector appended
  (scaled to the bag's unit norm). It asks whether the pretrained vector carries anything the
  bag does not: if it only compresses the bag, this row equals the ``lr``/``lr_bal`` baselines,
  and no head on that vector can beat them.

Beside them, ``majority`` (the most frequent training label) is the floor every row is read
against. A task with ``low_label`` gets the same rows again on the low-label folds (10% of each
training fold labelled): with a few dozen labels, accuracy is a contest with the majority class,
and these rows show how far any linear reader of the vector or the bag gets past it.

Cross-domain (P3) tasks get the same question in ranking form: the P3 ``ridge`` baseline's model
fitted on the frozen vector of each user's source history (``ridge-on-mean``,
``ridge-on-item-mean``; :func:`training.cross_domain_task.vector_ridge`, lambda on the P3 validation
users) and on the source bag with the mean readout appended (``ridge-on-bag+mean``, the twin of
``tfidf+mean``) beside ``ridge`` on the source bag itself, with per-user differences.

It costs seconds, so it is the first thing to run before paying for adapters: when every
readout is near the majority class, no head on top of it will do much better, and the fix is in
pretraining. Results go to ``RUN_DIR/probe.json``.

Modules: :mod:`readouts` (the frozen vectors), :mod:`profile` and :mod:`cross_domain` (the
probes per task kind), :mod:`run` (a whole run folder), :mod:`table` (the printed table).
"""
