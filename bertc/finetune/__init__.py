"""Fine-tuning: training strategies and the `bertc finetune` stage."""

from bertc.finetune.config import TrainConfig
from bertc.finetune.finetune import FinetuneConfig, finetune

__all__ = ["FinetuneConfig", "TrainConfig", "finetune"]
