"""Classification metrics: accuracy, macro-F1, per-class precision/recall and the confusion matrix."""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(true, predicted) counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true_positive = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def quick_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy and macro-F1 (over classes present in the data), as fractions."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    _, _, f1 = per_class_scores(matrix)
    present = matrix.sum(axis=1) > 0
    return {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0}


def classification_report(y_true, y_pred, labels: list) -> dict:
    """Everything a person checks about a classifier, JSON-ready."""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    precision, recall, f1 = per_class_scores(matrix)
    report = quick_metrics(y_true, y_pred, len(labels))
    report["samples"] = int(len(y_true))
    report["per_class"] = {
        str(label): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                     "support": int(matrix[i].sum())}
        for i, label in enumerate(labels)}
    report["confusion_matrix"] = matrix.tolist()
    report["labels"] = [str(label) for label in labels]
    return report


def correctness_bits(y_true, y_pred) -> str:
    """Which rows a model got right, as a string of 0s and 1s: one character a row, one line in JSON."""
    right = np.asarray(y_true, dtype=np.int64) == np.asarray(y_pred, dtype=np.int64)
    return (right.astype(np.uint8) + ord("0")).tobytes().decode()


def read_correctness(bits: str) -> np.ndarray:
    """The per-row correctness :func:`correctness_bits` wrote, as booleans."""
    return np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")


def paired_bootstrap(correct_a, correct_b, *, resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Accuracy difference b - a (in points) of two models scored on the same rows, with a paired bootstrap
    interval: rows are resampled together, so what both models get right or wrong cancels out. Only the rows where
    they disagree move the difference, so a resample is drawn as counts of b-only and a-only rows (the same
    distribution as resampling rows, without a resamples x rows array). ``sd_points``: the standard deviation of
    the per-row difference, in points (see :func:`rows_to_resolve`)."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("paired_bootstrap needs two equally long, non-empty lists of per-row correctness")
    rows, difference = len(a), b - a
    b_only, a_only = int((difference > 0).sum()), int((difference < 0).sum())
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(rows, [b_only / rows, a_only / rows, (rows - b_only - a_only) / rows], size=resamples)
    differences = (counts[:, 0] - counts[:, 1]) / rows * 100
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return {"difference": float(difference.mean() * 100), "low": float(low), "high": float(high),
            "confidence": confidence, "rows": rows, "sd_points": float(difference.std() * 100)}


Z95 = 1.959964  # two-sided 95% quantile of the normal distribution


def rows_to_resolve(sd_points: float, budget_points: float) -> int | None:
    """Rows a paired comparison needs for its 95% interval to be at most ``budget_points`` either side: the
    half-width is about Z95 * sd / sqrt(rows), with ``sd_points`` the standard deviation of the per-row
    difference (in points; it grows with how often the two models disagree). None for a zero budget."""
    if budget_points <= 0:
        return None
    return max(1, math.ceil((Z95 * sd_points / budget_points) ** 2))
