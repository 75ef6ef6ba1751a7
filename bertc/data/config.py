"""The options of the data every training stage reads (light: no pandas import)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from bertc.checks import below_minimum, check_config, field_problems, raise_problems

AUGMENT_STRATEGIES = ("delete", "swap")  # bertc.data.augment implements each


@dataclass(frozen=True)
class AugmentConfig:
    strategies: tuple[str, ...] = ()  # augmentation strategies: delete, swap
    factor: float = 1.0  # augmented copies per training example (fractions allowed)
    probability: float = 0.1  # share of words deleted or swapped per copy
    seed: int = 0  # augmentation seed

    def __post_init__(self):
        problems = field_problems(self)
        if not problems:  # ranges only mean something once the types are right
            unknown = [s for s in self.strategies if s not in AUGMENT_STRATEGIES]
            if unknown:
                problems.append(f"unknown --augment strategy {', '.join(unknown)}; choose from "
                                f"{', '.join(AUGMENT_STRATEGIES)}")
            if self.factor < 0:
                problems.append(f"--augment-factor must be >= 0, got {self.factor}")
            if not 0 < self.probability < 1:
                problems.append(f"--augment-probability must be in (0, 1), got {self.probability}")
        raise_problems(problems)


@dataclass(frozen=True)
class DataConfig:
    train: str | None = None  # training data: a file, a directory of splits, or a Hub dataset id
    eval: str | None = None  # evaluation data; default: the directory's validation file or a held-out split
    text_column: str | None = None  # text column (auto-detected when omitted)
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str | None = None  # label column (auto-detected when omitted)
    max_train_samples: int | None = None  # use only the first N training examples (after cleaning)
    max_eval_samples: int | None = None  # use only the first N evaluation examples (after cleaning)
    val_fraction: float = 0.1  # share held out for validation when no evaluation data is given
    clean: bool = True  # normalise whitespace, drop empty rows and duplicate training rows
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 42  # seed of the validation split

    def __post_init__(self):
        problems = field_problems(self)
        if not problems:  # ranges only mean something once the types are right
            for name in ("max_train_samples", "max_eval_samples"):
                value = getattr(self, name)
                if value is not None and value < 1:
                    problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        raise_problems(problems)

    @property
    def columns(self) -> Columns:
        return Columns(self.text_column, self.text_pair_column, self.label_column)

    def resolve(self, manifest: dict) -> tuple[DataConfig | None, str]:
        """The data to use for an artifact and where it came from: these options, else the training data its
        manifest records (with its columns); (None, reason) when none is given or the recorded data is gone."""
        if self.train is not None:
            return self, f"--data {self.train}"
        task = manifest.get("task", {})
        recorded = task.get("train_data")
        if not recorded or not Path(recorded).exists():
            why = f"the recorded training data {recorded} is not on this machine" if recorded else "none is recorded"
            return None, f"no labelled data: no --data given and {why}"
        evaluation = self.eval or task.get("eval_data")
        if evaluation is not None and not Path(evaluation).exists():
            evaluation = None
        recorded_data = replace(self, train=recorded, eval=evaluation,
                                text_column=self.text_column or task.get("text_column"),
                                text_pair_column=self.text_pair_column or task.get("text_pair_column"),
                                label_column=self.label_column or task.get("label_column"))
        return recorded_data, f"the artifact's training data ({recorded})"


@dataclass(frozen=True)
class Columns:
    text: str | None = None  # name of the text column (auto-detected when None)
    pair: str | None = None  # name of the second text column for sentence-pair tasks
    label: str | None = None  # name of the label column (auto-detected when None)


@dataclass(frozen=True)
class TransferConfig:
    """The transfer set of distillation beyond the labelled training texts: texts the teacher labels.

    Its flags avoid the data options' --augment and --augment-probability, which the distill command also has.
    """

    unlabeled: str | None = None  # unlabeled in-domain texts for the teacher to label: a .txt file (one text per
    # line) or a .tsv/.csv/.jsonl/.parquet file with a text column
    unlabeled_column: str | None = None  # text column of the --unlabeled file (auto-detected when omitted)
    max_unlabeled: int | None = None  # use only the first N texts of the --unlabeled file
    augment_copies: int = 0  # copies of each training text with words replaced by their neighbours in the
    # teacher's embedding space, labelled by the teacher (TinyBERT-style; 0: off)
    neighbour_probability: float = 0.4  # chance that each word of a copy is replaced
    neighbours: int = 15  # how many nearest neighbours of a word a replacement is drawn from
    seed: int = 42  # augmentation seed

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = below_minimum(self, ("max_unlabeled", "neighbours"))
        if self.unlabeled is not None and not self.unlabeled.strip():
            problems.append("--unlabeled is empty; name a file of texts or leave it out")
        for name in ("unlabeled_column", "max_unlabeled"):
            if getattr(self, name) is not None and self.unlabeled is None:
                problems.append(f"--{name.replace('_', '-')} needs --unlabeled; name the file of texts")
        if self.augment_copies < 0:
            problems.append(f"--augment-copies must be >= 0, got {self.augment_copies}")
        if not 0 < self.neighbour_probability <= 1:
            problems.append(f"--neighbour-probability must be in (0, 1], got {self.neighbour_probability}")
        return problems

    @property
    def active(self) -> bool:
        """Whether there is anything beyond the training texts to add."""
        return self.unlabeled is not None or self.augment_copies > 0
