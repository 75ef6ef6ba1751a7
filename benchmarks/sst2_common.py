"""What the SST-2 benchmark scripts share: where the data and the fine-tuned parent are, a throwaway parent for
--quick runs, and test accuracy with paired intervals."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bertc.artifact import is_artifact, read_manifest  # noqa: E402
from bertc.data.config import DataConfig  # noqa: E402
from bertc.finetune.config import FinetuneConfig  # noqa: E402
from bertc.finetune.finetune import finetune  # noqa: E402
from bertc.inference.registry import load_predictor  # noqa: E402
from bertc.metrics import paired_bootstrap  # noqa: E402
from bertc.training.config import TrainConfig  # noqa: E402

SST2 = REPO.parent / "shared" / "data" / "sst2"
PARENT = REPO.parent / "runs" / "minilm-sst2-16k"


def parent_or_quick(parent: Path, quick: bool, work: Path) -> Path:
    """The fine-tuned parent artifact; with --quick a barely trained one when it is missing; else exit saying how
    to make it."""
    if is_artifact(parent):
        return parent
    if not quick:
        sys.exit(f"no parent artifact at {parent}; make it with `bertc finetune --train {SST2}/train.tsv "
                 f"--eval {SST2}/validation.tsv --max-train-samples 16000 --epochs 1 --out {parent}`")
    return quick_parent(work / "parent")


def quick_parent(out: Path) -> Path:
    """A barely trained parent for --quick when the real one is missing (the numbers mean nothing)."""
    config = FinetuneConfig(data=DataConfig(train=str(SST2 / "train.tsv"), eval=str(SST2 / "validation.tsv"),
                                            max_train_samples=64, max_eval_samples=32),
                            train=TrainConfig(max_steps=3, batch_size=16, device="cpu", logging_steps=1))
    return finetune(None, config, out)


def predictions(path: Path, texts: list[str]) -> np.ndarray:
    predictor = load_predictor(path, batch_size=64)
    return np.concatenate([predictor.logits(texts[i:i + 256]).argmax(-1) for i in range(0, len(texts), 256)])


def accuracy_rows(models: dict[str, Path], test, reference: str) -> dict:
    """Test accuracy (%) of each model, its paired difference to ``models[reference]`` (a bootstrap 95% interval
    over the same rows) and its label agreement with it, with the rows where the labels differ."""
    labels = [str(label) for label in read_manifest(models[reference])["task"]["labels"]]
    truth = np.array([labels.index(str(label)) for label in test.labels])
    predicted = {name: predictions(path, test.texts) for name, path in models.items()}
    reference_correct = predicted[reference] == truth
    rows = {}
    for name, given in predicted.items():
        correct = given == truth
        rows[name] = {"accuracy": float(correct.mean() * 100),
                      f"agreement_with_{reference}": float((given == predicted[reference]).mean() * 100),
                      "labels_differing": [int(i) for i in np.flatnonzero(given != predicted[reference])]}
        if name != reference:
            rows[name][f"vs_{reference}"] = paired_bootstrap(reference_correct, correct)
    return rows
