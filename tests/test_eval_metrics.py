from __future__ import annotations

import pytest

from evals.metrics import cohen_kappa, f1_for, macro_f1, score


def test_kappa_matches_the_textbook_example():
    # Wikipedia's worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)


def test_precision_recall_and_undefined_cases():
    pairs = [("M5", "M5"), ("M5", "M1"), ("M1", "M5"), ("M1", "M1"), ("M5", "M5")]
    precision, recall, f1 = f1_for(pairs, "M5")
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3) and f1 == pytest.approx(2 / 3)
    assert f1_for([("M1", "M1")], "M5") == (None, None, None)


def test_macro_f1_averages_only_present_classes():
    pairs = [("A1", "A1"), ("A3", "A3"), ("A3", "A1")]
    # A1: p 0.5 r 1 -> 2/3; A3: p 1 r 0.5 -> 2/3
    assert macro_f1(pairs, ("A1", "A2", "A3", "A4")) == pytest.approx(2 / 3)


def test_null_labels_are_not_scored_and_unknown_counts_as_wrong():
    expected = [
        {"category": "A3", "subcategory": None, "mitigation": "M5"},
        {"category": None, "subcategory": None, "mitigation": None},
        {"category": "A1", "subcategory": "bad_node", "mitigation": "M4"},
    ]
    predicted = [
        {"category": "A3", "subcategory": "timeout", "mitigation": "M5"},
        {"category": "A2", "subcategory": "x", "mitigation": "M1"},
        {"category": "unknown", "subcategory": "unknown", "mitigation": "M1"},
    ]
    out = score(expected, predicted)
    assert out["n"] == 3
    assert out["category_accuracy"] == pytest.approx(0.5)
    assert out["subcategory_accuracy"] == pytest.approx(0.0)
    assert out["mitigation_accuracy"] == pytest.approx(0.5)
    assert out["m5_precision"] == pytest.approx(1.0) and out["m5_recall"] == pytest.approx(1.0)
    assert out["abstain_rate"] == pytest.approx(1 / 3)
    assert out["confusion"]["category"] == {"A3": {"A3": 1}, "A1": {"unknown": 1}}
