"""The options of `bertc finetune` (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertc.data.config import DataConfig
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    model: str | None = None  # pretrained model: the embedded MiniLM (default), a directory or a Hub id
    trust_remote_code: bool = False  # allow model code from the Hub to run
