import pytest

from uservec.training.evaluation.classification import accuracy, macro_f1


def test_accuracy_counts_exact_matches():
    assert accuracy(["a", "b", "b", "c"], ["a", "b", "c", "c"]) == 0.75


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    # F1(a) = 2*2 / (2*2 + 1) = 0.8; b is never predicted and c never occurs: both 0.
    got = macro_f1(["a", "a", "b"], ["a", "a", "a"], classes=["a", "b", "c"])
    assert got == pytest.approx(0.8 / 3)
