"""Metrics against values computed by hand from the confusion counts."""
import numpy as np
import pytest

from mertool.reports import metrics

# true / predicted over 5 classes; class 4 never occurs.
#   class 0: TP 2, FP 2, FN 1 -> F1 4/7, recall 2/3, precision 1/2
#   class 1: TP 1, FP 1, FN 1 -> F1 1/2, recall 1/2
#   class 2: TP 3, FP 0, FN 1 -> F1 6/7, recall 3/4
#   class 3: TP 1, FP 0, FN 0 -> F1 1,   recall 1
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
P = np.array([0, 0, 1, 1, 0, 2, 2, 2, 0, 3])


def test_accuracy_and_confusion():
    assert metrics.accuracy(Y, P) == pytest.approx(0.7)
    cm = metrics.confusion(Y, P, 5)
    assert cm.tolist() == [[2, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 3, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]


def test_uf1_uar_match_hand_computed():
    assert metrics.uf1(Y, P, 5) == pytest.approx((4 / 7 + 1 / 2 + 6 / 7 + 1) / 4)
    assert metrics.uar(Y, P, 5) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4 + 1) / 4)
    # class 4 never occurs: UF1 (MEGC) averages the 4 classes that do, macro F1 all 5 (class 4 counts 0)
    assert metrics.macro_f1(Y, P, 5) == pytest.approx((4 / 7 + 1 / 2 + 6 / 7 + 1) / 5)
    # with only the classes that occur, the two definitions agree
    assert metrics.macro_f1(Y, P, 4) == pytest.approx(metrics.uf1(Y, P, 4))


def test_macro_f1_differs_from_uf1_when_a_class_is_absent():
    y = p = np.array([0, 0, 1, 1])
    assert metrics.uf1(y, p, 3) == pytest.approx(1.0)
    assert metrics.macro_f1(y, p, 3) == pytest.approx(2 / 3)


def test_class_predicted_but_absent_counts_in_uf1_not_uar():
    y, p = np.array([0, 0, 1]), np.array([0, 2, 1])
    assert metrics.uf1(y, p, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert metrics.uar(y, p, 3) == pytest.approx((1 / 2 + 1) / 2)


def test_per_class_and_summary():
    rows = metrics.per_class(Y, P, ["a", "b", "c", "d", "e"])
    assert rows[0] == {"class": "a", "precision": pytest.approx(0.5), "recall": pytest.approx(2 / 3),
                       "f1": pytest.approx(4 / 7), "support": 3}
    assert rows[4]["support"] == 0 and rows[4]["f1"] == 0
    s = metrics.summarize(Y, P, ["a", "b", "c", "d", "e"])
    assert s["n"] == 10 and s["accuracy"] == pytest.approx(0.7) and len(s["confusion"]) == 5


@pytest.mark.parametrize("y,p,k", [([0, 1], [0], None), ([], [], None), ([0, 5], [0, 1], 3), ([0.5], [0], None),
                                   ([[0, 1]], [[0, 1]], None), ([-1, 0], [0, 0], 2)])
def test_invalid_inputs_rejected(y, p, k):
    with pytest.raises(ValueError):
        metrics.uf1(np.array(y), np.array(p), k)
