"""Evaluation and prediction of any artifact, through the predictor its model kind selects."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertc.data.config import Columns
from bertc.data.labels import check_known_labels
from bertc.data.load import SPLIT_NAMES, TextDataset, read_file, read_texts, resolve_split
from bertc.data.prepare import read_eval_data
from bertc.errors import BertcError
from bertc.inference.registry import check_runtime, load_predictor, model_manifest
from bertc.metrics import classification_report, correctness_bits

SPLITS = tuple(SPLIT_NAMES)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_texts(predictor, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
    probabilities = softmax(predictor.logits(texts, pairs))
    labels = predictor.labels
    return [{"text": text, "label": labels[int(row.argmax())],
             "probabilities": {str(label): float(p) for label, p in zip(labels, row)}}
            for text, row in zip(texts, probabilities)]


def score_dataset(predictor, dataset: TextDataset, per_row: bool = False) -> dict:
    """A full classification report of ``predictor`` on labelled data; with ``per_row``, also ``correct``: which
    rows it got right, in order, as a string of 0s and 1s (for paired comparisons of models on the same rows)."""
    labels = predictor.labels
    index = {str(label): i for i, label in enumerate(labels)}
    check_known_labels(dataset.labels, labels, dataset.source, "Pass data of the task the model was trained on")
    y_true = [index[str(label)] for label in dataset.labels]
    y_pred = predictor.logits(dataset.texts, dataset.pairs).argmax(axis=-1)
    report = classification_report(y_true, y_pred, labels)
    if per_row:
        report["correct"] = correctness_bits(y_true, y_pred)
    return report


def task_columns(manifest: dict, text: str | None = None, pair: str | None = None,
                 label: str | None = None) -> Columns:
    """Columns given by the user, else the ones the artifact was trained with."""
    task = manifest.get("task", {})
    return Columns(text or task.get("text_column"), pair or task.get("text_pair_column"),
                   label or task.get("label_column"))


def prediction_texts(data: str, task: dict, text: str | None = None,
                     pair: str | None = None) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts) of an unlabelled file: the columns given, else the ones the artifact of
    ``task`` was trained with when the file has them, else the ones auto-detection finds."""
    path = Path(resolve_split(data, "test"))  # its header only; read_texts reads (and checks) the file again
    present = {str(column) for column in read_file(path).columns} if path.is_file() else set()

    def recorded(name: str | None) -> str | None:
        return name if name in present else None

    return read_texts(data, text or recorded(task.get("text_column")), pair or recorded(task.get("text_pair_column")))


def check_pairs(task: dict, pairs: list[str] | None) -> None:
    """A sentence-pair model needs the second text of every pair; a model trained on single texts takes none
    (a model known only by its labels records no columns and takes either)."""
    if task.get("text_pair_column") is not None and pairs is None:
        raise BertcError("this model reads sentence pairs; give --pair for each text or --data with the pair column")
    single = task.get("text_column") is not None and "text_pair_column" in task and task["text_pair_column"] is None
    if pairs is not None and single:
        raise BertcError("this model reads single texts, not sentence pairs; leave out --pair, or name the text "
                         "column of --data with --text-column")


def evaluate(path: Path | str, data: str, *, columns: Columns | None = None, split: str = "test",
             max_samples: int | None = None, device: str = "cpu", batch_size: int = 64,
             per_row: bool = False) -> dict:
    """`bertc evaluate`: accuracy, macro-F1, per-class scores and confusion matrix of an artifact (with
    ``per_row``, which rows it got right: see :func:`score_dataset`)."""
    if split not in SPLITS:
        raise BertcError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    check_runtime(device, batch_size, max_samples)
    path, manifest = model_manifest(path)
    columns = columns or task_columns(manifest)
    dataset, cleaning = read_eval_data(data, columns, split=split, max_samples=max_samples)
    predictor = load_predictor(path, device=device, batch_size=batch_size)
    report = score_dataset(predictor, dataset, per_row)
    report["artifact"] = str(Path(path).absolute())
    report["data"] = dataset.source
    if cleaning is not None:
        report["dropped_rows"] = {"empty_text": cleaning.empty_text, "missing_label": cleaning.missing_label}
    return report


def predict(path: Path | str, texts: list[str], pairs: list[str] | None = None, *, device: str = "cpu",
            batch_size: int = 64) -> list[dict]:
    """`bertc predict`: the label and class probabilities of each text (with its second text, for a sentence-pair
    model)."""
    if not texts:
        raise BertcError("no texts to predict; pass a text or --data PATH")
    if pairs is not None and len(pairs) != len(texts):
        raise BertcError(f"{len(texts)} texts but {len(pairs)} second texts (--pair); give one --pair per text")
    check_runtime(device, batch_size)
    path, manifest = model_manifest(path)
    check_pairs(manifest.get("task", {}), pairs)
    return predict_texts(load_predictor(path, device=device, batch_size=batch_size), texts, pairs)
