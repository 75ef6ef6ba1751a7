"""Checking a converted model against its reference on real samples: logits, labels and accuracy.

An exported or quantized model is only trusted after it was run on labelled examples next to the model it came
from: the largest logit difference, the share of examples that get the same label, and both accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertc.data.config import Columns
from bertc.data.labels import check_known_labels
from bertc.data.load import TextDataset
from bertc.data.prepare import read_eval_data
from bertc.errors import BertcError
from bertc.metrics import classification_report

# Used only when no labelled data is given or recorded: logits and labels can still be compared.
FALLBACK_TEXTS = [
    "a gripping, beautifully acted film", "the plot is thin and the jokes fall flat", "it was fine, i guess",
    "one of the best movies of the year", "a tedious, overlong mess", "charming and warm from start to end",
    "i wanted my money back", "surprisingly moving", "not good, not bad, just there", "an absolute triumph",
    "the acting is wooden and the script is worse", "a small gem", "boring", "wonderful", "terrible pacing",
    "the kind of movie you forget before the credits roll",
]


@dataclass
class Samples:
    dataset: TextDataset
    source: str
    labelled: bool


def verification_samples(data: str | None, task: dict, split: str, max_samples: int) -> Samples:
    """The examples a converted model is checked on: ``data``, else the eval data recorded for the parent,
    else its training data, else a few built-in sentences (no accuracy then)."""
    columns = Columns(task.get("text_column"), task.get("text_pair_column"), task.get("label_column"))
    if data is not None:
        if not Path(data).exists():
            raise BertcError(f"--data {data} does not exist; pass a labelled data file or a directory of splits")
        dataset, _ = read_eval_data(data, columns, split=split, max_samples=max_samples)
        return Samples(dataset, dataset.source, True)
    recorded = [(task.get("eval_data"), split), ((task.get("data") or {}).get("eval_source"), split),
                (task.get("train_data"), "train")]
    for path, which in recorded:
        if path and Path(path).exists():
            dataset, _ = read_eval_data(str(path), columns, split=which, max_samples=max_samples)
            return Samples(dataset, dataset.source, True)
    if task.get("text_pair_column"):
        raise BertcError("no labelled data to verify this sentence-pair model on (none recorded in the "
                         "artifact); pass --data PATH")
    texts = FALLBACK_TEXTS[:max_samples]
    return Samples(TextDataset(texts=texts, labels=[None] * len(texts), source="built-in sentences"),
                   "built-in sentences (no labelled data found; pass --data to measure accuracy)", False)


def check_samples_fit(samples: Samples, labels: list) -> None:
    if not samples.labelled:
        return
    check_known_labels(samples.dataset.labels, labels, samples.source, "Pass --data with this task's labels")


def compare(reference: np.ndarray, candidate: np.ndarray, samples: Samples, labels: list) -> dict:
    """Agreement of a candidate's logits with the reference's, and both accuracies when labels are known."""
    ref_pred, cand_pred = reference.argmax(-1), candidate.argmax(-1)
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    result = {
        "data": samples.source,
        "samples": int(len(reference)),
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "label_agreement": float((ref_pred == cand_pred).mean()) if len(ref_pred) else 1.0,
        "disagreements": int((ref_pred != cand_pred).sum()),
    }
    if samples.labelled:
        index = {str(label): i for i, label in enumerate(labels)}
        truth = np.array([index[str(label)] for label in samples.dataset.labels])
        result["reference_accuracy"] = float((ref_pred == truth).mean())
        result["accuracy"] = float((cand_pred == truth).mean())
        result["accuracy_drop_points"] = 100 * (result["reference_accuracy"] - result["accuracy"])
    return result


def eval_report(logits: np.ndarray, samples: Samples, labels: list) -> dict:
    """The classification report (as in ``bertc evaluate``) of ``logits`` on labelled samples."""
    index = {str(label): i for i, label in enumerate(labels)}
    report = classification_report([index[str(label)] for label in samples.dataset.labels], logits.argmax(-1),
                                   labels)
    report["data"] = samples.source
    return report


def logits_on(predictor, samples: Samples) -> np.ndarray:
    return predictor.logits(samples.dataset.texts, samples.dataset.pairs)
