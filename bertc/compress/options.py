"""Option groups shared by `bertc prune` and `bertc distill`: which data to use, and the distillation loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bertc.data import DataConfig
from bertc.data.augment import AugmentConfig
from bertc.errors import BertcError


@dataclass(frozen=True)
class TaskData:
    train: str | None = None  # labelled data (default: the training data recorded in the artifact)
    eval: str | None = None  # evaluation data (default: the artifact's evaluation data)
    text_column: str | None = None  # text column (default: the artifact's, else auto-detected)
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str | None = None  # label column (default: the artifact's, else auto-detected)
    max_train_samples: int | None = None  # use only the first N training examples
    max_eval_samples: int | None = None  # use only the first N evaluation examples
    val_fraction: float = 0.1  # share held out for validation when no evaluation data is given
    clean: bool = True  # normalise whitespace, drop empty rows and duplicates
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 42  # seed of the validation split when the data has none

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BertcError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def resolve(self, manifest: dict) -> tuple[DataConfig | None, str]:
        """The data to use and where it came from; (None, reason) when none is given or recorded on disk."""
        task = manifest.get("task", {})
        recorded = task.get("train_data")
        if self.train is not None:
            train, source = self.train, f"--data {self.train}"
        elif recorded and Path(recorded).exists():
            train, source = recorded, f"the artifact's training data ({recorded})"
        else:
            why = f"the recorded training data {recorded} is not on this machine" if recorded else "none is recorded"
            return None, f"no labelled data: no --data given and {why}"
        use_recorded = self.train is None
        evaluation = self.eval or (task.get("eval_data") if use_recorded else None)
        if evaluation is not None and use_recorded and not Path(evaluation).exists():
            evaluation = None
        return DataConfig(
            train=train, eval=evaluation,
            text_column=self.text_column or (task.get("text_column") if use_recorded else None),
            text_pair_column=self.text_pair_column or (task.get("text_pair_column") if use_recorded else None),
            label_column=self.label_column or (task.get("label_column") if use_recorded else None),
            max_train_samples=self.max_train_samples, max_eval_samples=self.max_eval_samples,
            val_fraction=self.val_fraction, clean=self.clean, augment=self.augment, seed=self.seed), source


@dataclass(frozen=True)
class DistillLoss:
    temperature: float = 2.0  # softmax temperature of the soft-label loss
    soft_weight: float = 0.5  # weight of the KL divergence to the teacher's soft labels (times temperature^2)
    hard_weight: float = 0.5  # weight of the cross-entropy with the true labels
    hidden_weight: float = 0.0  # weight of the hidden-state loss between mapped layers (TinyBERT-style)
    attention_weight: float = 0.0  # weight of the attention-map loss between mapped layers (head-averaged)

    def __post_init__(self):
        problems = []
        if self.temperature <= 0:
            problems.append(f"--temperature must be positive, got {self.temperature}")
        for name in ("soft_weight", "hard_weight", "hidden_weight", "attention_weight"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not problems and not (self.soft_weight or self.hard_weight or self.hidden_weight or self.attention_weight):
            problems.append("all distillation loss weights are 0; give --soft-weight or --hard-weight a positive "
                            "value")
        if problems:
            raise BertcError("; ".join(problems))

    @property
    def intermediate(self) -> bool:
        return bool(self.hidden_weight or self.attention_weight)
