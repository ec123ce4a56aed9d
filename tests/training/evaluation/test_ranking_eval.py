import math

import numpy as np
import pytest
from data_helpers import random_cross_domain

from uservec.training.baselines.cooccurrence import popularity_scorer
from uservec.training.evaluation.cross_domain_split import cross_domain_split
from uservec.training.evaluation.ranking_eval import evaluate_cross_domain, evaluate_ranking


def test_evaluate_cross_domain_uses_the_tie_rule_and_reports_left_out_users():
    dataset = random_cross_domain(num_users=80)
    split = cross_domain_split(dataset, "T")
    constant = evaluate_cross_domain(lambda users: np.zeros((len(users), split.num_candidates)),
                                     split, k=3)
    popular = evaluate_cross_domain(popularity_scorer(split), split, k=3)
    # Equal scores fall back to popularity order: the same ranking as the popularity baseline.
    assert constant["per_user"]["ndcg@3"] == popular["per_user"]["ndcg@3"]
    assert constant["evaluated_users"] == split.test_users.size
    assert constant["left_out_users"] == split.left_out_users.size
    values = np.array(popular["per_user"]["ndcg@3"])
    assert popular["ndcg@3"]["se"] == pytest.approx(values.std(ddof=1) / math.sqrt(values.size))
    with pytest.raises(ValueError):
        evaluate_cross_domain(lambda users: np.zeros((len(users), 2)), split)


def test_the_json_view_is_the_typed_evaluation():
    split = cross_domain_split(random_cross_domain(num_users=80), "T")
    typed = evaluate_ranking(popularity_scorer(split), split, k=5)
    as_json = typed.to_json()
    assert list(as_json) == ["hr@5", "recall@5", "ndcg@5", "evaluated_users", "left_out_users",
                             "per_user"]
    assert as_json["ndcg@5"] == typed.summary("ndcg").to_json()
    assert as_json["per_user"]["user_id"] == split.dataset.user_ids[split.test_users].tolist()
    assert "per_user" not in typed.to_json(per_user=False)
