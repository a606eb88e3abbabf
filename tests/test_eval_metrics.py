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


def test_bootstrap_intervals_contain_the_point_estimate_and_collapse_when_certain():
    from evals.metrics import bootstrap_intervals

    expected = [{"category": "A3", "subcategory": "t", "mitigation": "M1"}] * 40
    mixed = [{"category": "A3" if i % 4 else "A1", "subcategory": "t", "mitigation": "M1"} for i in range(40)]
    interval = bootstrap_intervals(expected, mixed, resamples=300)["category_accuracy"]
    assert interval[0] < 0.75 < interval[1]
    assert bootstrap_intervals(expected, expected, resamples=100)["category_accuracy"] == [1.0, 1.0]


def test_calibration_buckets_and_ece():
    from evals.metrics import calibration

    expected = [{"category": "A3"}] * 4
    predicted = [{"category": "A3"}, {"category": "A1"}, {"category": "A3"}, {"category": "A3"}]
    result = calibration(expected, predicted, [0.1, 0.15, 0.9, 0.95], buckets=5)
    low, high = result["buckets"][0], result["buckets"][4]
    assert (low["n"], low["accuracy"]) == (2, 0.5) and (high["n"], high["accuracy"]) == (2, 1.0)
    # ECE = 2/4*|0.5-0.125| + 2/4*|1-0.925|
    assert result["ece"] == pytest.approx(0.5 * 0.375 + 0.5 * 0.075)


def test_latency_percentiles_come_with_bootstrap_intervals_that_contain_them():
    from evals.metrics import latency_intervals, percentile

    latencies = [float(i) for i in range(1, 201)]
    intervals = latency_intervals(latencies, resamples=300)
    for key, q in (("latency_ms_p50", 0.5), ("latency_ms_p95", 0.95)):
        low, high = intervals[key]
        assert low <= percentile(latencies, q) <= high and low < high
    assert latency_intervals([3.0]) == {"latency_ms_p50": None, "latency_ms_p95": None}


def test_kappa_and_macro_f1_agree_with_scikit_learn_and_intervals_are_scipys_exact_ones():
    """The bootstraps call κ and F1 thousands of times, so they are computed here; scikit-learn is the
    reference they must agree with. Proportion intervals come from scipy directly."""
    import random

    from scipy.stats import binomtest
    from sklearn.metrics import cohen_kappa_score, f1_score

    from evals.metrics import CATEGORIES, clopper_pearson, cohen_kappa, macro_f1

    rng = random.Random(16)
    for _ in range(50):
        n = rng.randrange(5, 80)
        truth = [rng.choice(CATEGORIES[: rng.randrange(2, 5)]) for _ in range(n)]
        guess = [t if rng.random() < 0.7 else rng.choice(CATEGORIES) for t in truth]
        pairs = list(zip(truth, guess, strict=True))
        present = [c for c in CATEGORIES if c in truth]
        assert abs(cohen_kappa(pairs) - cohen_kappa_score(truth, guess)) < 1e-12
        expected = f1_score(truth, guess, labels=present, average="macro", zero_division=0)
        assert abs(macro_f1(pairs, CATEGORIES) - expected) < 1e-12
    low, high = clopper_pearson(27, 27)
    assert round(low, 3) == 0.872 and high == 1.0  # 27 of 27 right is not certainty
    exact = binomtest(40, 50).proportion_ci(method="exact")
    assert clopper_pearson(40, 50) == (exact.low, exact.high)
