"""The options of the data every training stage reads (light: no pandas import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertc.errors import BertcError

AUGMENT_STRATEGIES = ("delete", "swap")  # bertc.data.augment implements each


@dataclass(frozen=True)
class AugmentConfig:
    strategies: tuple[str, ...] = ()  # augmentation strategies: delete, swap
    factor: float = 1.0  # augmented copies per training example (fractions allowed)
    probability: float = 0.1  # share of words deleted or swapped per copy
    seed: int = 0  # augmentation seed

    def __post_init__(self):
        unknown = [s for s in self.strategies if s not in AUGMENT_STRATEGIES]
        if unknown:
            raise BertcError(f"unknown --augment strategy {', '.join(unknown)}; choose from "
                             f"{', '.join(AUGMENT_STRATEGIES)}")
        if self.factor < 0:
            raise BertcError(f"--augment-factor must be >= 0, got {self.factor}")
        if not 0 < self.probability < 1:
            raise BertcError(f"--augment-probability must be in (0, 1), got {self.probability}")


@dataclass(frozen=True)
class DataConfig:
    train: str  # training data: a file, a directory of splits, or a Hub dataset id
    eval: str | None = None  # evaluation data; default: the directory's validation file or a held-out split
    text_column: str | None = None  # text column (auto-detected when omitted)
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str | None = None  # label column (auto-detected when omitted)
    max_train_samples: int | None = None  # use only the first N training examples (after cleaning)
    max_eval_samples: int | None = None  # use only the first N evaluation examples (after cleaning)
    val_fraction: float = 0.1  # share held out for validation when no evaluation data is given
    clean: bool = True  # normalise whitespace, drop empty rows and duplicates
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 42  # seed of the validation split

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BertcError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    @property
    def columns(self) -> Columns:
        return Columns(self.text_column, self.text_pair_column, self.label_column)


@dataclass(frozen=True)
class Columns:
    text: str | None = None  # name of the text column (auto-detected when None)
    pair: str | None = None  # name of the second text column for sentence-pair tasks
    label: str | None = None  # name of the label column (auto-detected when None)
