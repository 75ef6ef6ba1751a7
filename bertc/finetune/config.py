"""The options of `bertc finetune` (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertc.checks import field_problems, raise_problems
from bertc.data.config import DataConfig
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trust_remote_code: bool = False  # allow model code from the Hub to run

    def __post_init__(self):
        problems = field_problems(self)
        if not problems and self.data.train is None:
            problems.append("--train is required: fine-tuning needs labelled training data (a file, a directory of "
                            "splits or a Hub dataset id)")
        raise_problems(problems)
