"""Classification metrics against figures worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertc.metrics import classification_report, confusion_matrix, paired_bootstrap, per_class_scores, quick_metrics

# Three classes: class 1 is in the data but never predicted; class 2 is predicted once but absent from the data.
Y_TRUE = [0, 0, 0, 0, 1, 1]
Y_PRED = [0, 0, 0, 2, 0, 0]
# Rows: true class, columns: predicted class.
MATRIX = [[3, 0, 1],
          [2, 0, 0],
          [0, 0, 0]]
# Class 0: 3 right of 5 predicted (precision 3/5), 3 found of 4 (recall 3/4), F1 = 2*(3/5)(3/4)/(3/5+3/4) = 2/3.
# Classes 1 and 2: nothing right, so 0 everywhere (no division by zero for the empty row and column).
PRECISION, RECALL, F1 = [3 / 5, 0, 0], [3 / 4, 0, 0], [2 / 3, 0, 0]


def test_confusion_matrix_counts_true_against_predicted():
    matrix = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert matrix.tolist() == MATRIX
    assert matrix.dtype == np.int64
    assert confusion_matrix([1, 1, 1], [1, 1, 0], 4).tolist() == [[0] * 4, [1, 2, 0, 0], [0] * 4, [0] * 4]


def test_per_class_scores_by_hand():
    precision, recall, f1 = per_class_scores(np.array(MATRIX))
    assert precision.tolist() == pytest.approx(PRECISION)
    assert recall.tolist() == pytest.approx(RECALL)
    assert f1.tolist() == pytest.approx(F1)
    assert np.isfinite(precision).all() and np.isfinite(recall).all() and np.isfinite(f1).all()


def test_macro_f1_averages_over_the_classes_present_in_the_data():
    metrics = quick_metrics(Y_TRUE, Y_PRED, 3)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    # Classes 0 and 1 are in y_true: (2/3 + 0) / 2. Class 2 (only predicted) does not count; over all three
    # classes it would be 2/9, over the predicted ones (0 and 2) 1/3 as well, so check a case that separates those.
    assert metrics["macro_f1"] == pytest.approx(1 / 3)
    assert quick_metrics([0, 0, 1, 1], [0, 0, 1, 2], 3)["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert quick_metrics([0, 1], [0, 1], 5) == {"accuracy": 1.0, "macro_f1": 1.0}
    assert quick_metrics(np.array([1, 1]), np.array([0, 0]), 2) == {"accuracy": 0.0, "macro_f1": 0.0}


def test_quick_metrics_of_no_samples_is_zero():
    empty = np.array([], dtype=np.int64)
    assert quick_metrics(empty, empty, 2) == {"accuracy": 0.0, "macro_f1": 0.0}


def test_quick_metrics_returns_plain_floats():
    metrics = quick_metrics(np.array(Y_TRUE), np.array(Y_PRED), 3)
    assert all(type(value) is float for value in metrics.values())


def test_classification_report_by_hand():
    report = classification_report(Y_TRUE, Y_PRED, ["negative", "neutral", "positive"])
    assert report["accuracy"] == pytest.approx(0.5) and report["macro_f1"] == pytest.approx(1 / 3)
    assert report["samples"] == 6
    assert report["labels"] == ["negative", "neutral", "positive"]
    assert report["confusion_matrix"] == MATRIX
    assert list(report["per_class"]) == ["negative", "neutral", "positive"]
    negative = report["per_class"]["negative"]
    assert negative == {"precision": pytest.approx(0.6), "recall": pytest.approx(0.75), "f1": pytest.approx(2 / 3),
                        "support": 4}
    assert report["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["per_class"]["positive"]["support"] == 0
    json.dumps(report)  # JSON-ready: no numpy types left


def test_classification_report_names_labels_as_text():
    report = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), [0, 1])
    assert report["labels"] == ["0", "1"] and list(report["per_class"]) == ["0", "1"]
    assert report["per_class"]["1"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_class"]["0"]["precision"] == pytest.approx(0.5)


def test_empty_lists_score_zero_instead_of_failing():
    assert quick_metrics([], [], 2) == {"accuracy": 0.0, "macro_f1": 0.0}


def test_paired_bootstrap_interval_holds_the_difference_and_shrinks_with_agreement():
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.8
    b = a.copy()
    b[:20] = True  # b fixes 20 rows a got wrong or keeps them right
    expected = (b.mean() - a.mean()) * 100
    result = paired_bootstrap(a, b)
    assert result["difference"] == pytest.approx(expected)
    assert result["low"] <= expected <= result["high"]
    # The same models with unrelated errors (unpaired) spread far wider than the paired interval.
    shuffled = paired_bootstrap(a, rng.permutation(b))
    assert shuffled["high"] - shuffled["low"] > 2 * (result["high"] - result["low"])
    same = paired_bootstrap(a, a)
    assert same["low"] == same["high"] == 0.0


def test_paired_bootstrap_refuses_unpaired_rows():
    with pytest.raises(ValueError):
        paired_bootstrap([True, False], [True])
