"""Running any bertc artifact on texts: logits, predictions and evaluation.

Predictors are chosen by the artifact's ``model.kind`` through a small registry, so later model kinds
(ONNX, quantized) plug in without changing evaluate/predict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertc.artifact import load_model, load_tokenizer, read_manifest
from bertc.data.batching import padded_batches
from bertc.data.config import Columns
from bertc.data.labels import check_known_labels
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.metrics import classification_report


@dataclass
class TorchPredictor:
    model: torch.nn.Module
    tokenizer: object
    labels: list
    max_length: int = 128
    batch_size: int = 64
    device: str = "cpu"

    @torch.inference_mode()
    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        self.model.eval()
        for batch, inputs in padded_batches(self.tokenizer, encoded, self.batch_size, "pt"):
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            out[batch] = self.model(**inputs).logits.float().cpu().numpy()
        return out


def load_torch_predictor(path: Path, manifest: dict, device: str, batch_size: int) -> TorchPredictor:
    if device == "cuda" and not torch.cuda.is_available():
        raise BertcError("--device cuda was given but PyTorch sees no CUDA GPU; use --device cpu")
    model = load_model(path, device=device)
    return TorchPredictor(model=model, tokenizer=load_tokenizer(path), labels=manifest["task"]["labels"],
                          max_length=manifest["task"].get("max_length", 128), batch_size=batch_size,
                          device=device)


def lazy_loader(module: str, name: str) -> Callable:
    """A predictor loader imported on first use, so `import bertc` does not import onnxruntime."""

    def load(path: Path, manifest: dict, device: str, batch_size: int):
        import importlib

        return getattr(importlib.import_module(module), name)(path, manifest, device, batch_size)

    return load


PREDICTOR_LOADERS: dict[str, Callable] = {
    "pytorch": load_torch_predictor,
    "onnx": lazy_loader("bertc.export.runtime", "load_onnx_predictor"),
    "pytorch-quantized": lazy_loader("bertc.export.torch_dynamic", "load_torch_dynamic_predictor"),
}


def load_predictor(path: Path | str, device: str = "cpu", batch_size: int = 64):
    path = Path(path)
    manifest = read_manifest(path)
    kind = manifest["model"].get("kind", "pytorch")
    if kind not in PREDICTOR_LOADERS:
        raise BertcError(f"{path} holds a '{kind}' model that this installation cannot run; "
                         f"known kinds: {', '.join(PREDICTOR_LOADERS)}")
    return PREDICTOR_LOADERS[kind](path, manifest, device, batch_size)


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


def score_dataset(predictor, dataset: TextDataset) -> dict:
    """A full classification report of ``predictor`` on labelled data."""
    labels = predictor.labels
    index = {str(label): i for i, label in enumerate(labels)}
    check_known_labels(dataset.labels, labels, dataset.source, "Pass data of the task the model was trained on")
    y_true = [index[str(label)] for label in dataset.labels]
    y_pred = predictor.logits(dataset.texts, dataset.pairs).argmax(axis=-1)
    return classification_report(y_true, y_pred, labels)


def task_columns(manifest: dict, text: str | None = None, pair: str | None = None,
                 label: str | None = None) -> Columns:
    """Columns given by the user, else the ones the artifact was trained with."""
    task = manifest.get("task", {})
    return Columns(text or task.get("text_column"), pair or task.get("text_pair_column"),
                   label or task.get("label_column"))


def evaluate(path: Path | str, data: str, *, columns: Columns | None = None, split: str = "test",
             max_samples: int | None = None, device: str = "cpu", batch_size: int = 64) -> dict:
    """`bertc evaluate`: accuracy, macro-F1, per-class scores and confusion matrix of an artifact."""
    from bertc.data.prepare import read_eval_data

    manifest = read_manifest(path)
    columns = columns or task_columns(manifest)
    dataset, _ = read_eval_data(data, columns, split=split, max_samples=max_samples)
    predictor = load_predictor(path, device=device, batch_size=batch_size)
    report = score_dataset(predictor, dataset)
    report["artifact"] = str(Path(path).absolute())
    report["data"] = dataset.source
    return report


def predict(path: Path | str, texts: list[str], pairs: list[str] | None = None, *, device: str = "cpu",
            batch_size: int = 64) -> list[dict]:
    """`bertc predict`: the label and class probabilities of each text."""
    if not texts:
        raise BertcError("no texts to predict; pass a text or --data PATH")
    return predict_texts(load_predictor(path, device=device, batch_size=batch_size), texts, pairs)
