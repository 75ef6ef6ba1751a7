"""The options of `bertc prune` and `bertc distill`, and the distillation loss both use (light: no torch import).

Their data options are a :class:`bertc.data.config.DataConfig` whose training data may be left out: the stages
then use the data recorded in the artifact (``DataConfig.resolve``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bertc.checks import below_minimum, check_config
from bertc.data.config import DataConfig
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class DistillLoss:
    temperature: float = 2.0  # softmax temperature of the soft-label loss
    soft_weight: float = 0.5  # weight of the KL divergence to the teacher's soft labels (times temperature^2)
    hard_weight: float = 0.5  # weight of the cross-entropy with the true labels
    hidden_weight: float = 0.0  # weight of the hidden-state loss between mapped layers (TinyBERT-style)
    attention_weight: float = 0.0  # weight of the attention-map loss between mapped layers (head-averaged)

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = []
        if self.temperature <= 0:
            problems.append(f"--temperature must be positive, got {self.temperature}")
        for name in ("soft_weight", "hard_weight", "hidden_weight", "attention_weight"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not problems and not (self.soft_weight or self.hard_weight or self.hidden_weight or self.attention_weight):
            problems.append("all distillation loss weights are 0; give --soft-weight or --hard-weight a positive "
                            "value")
        return problems

    @property
    def intermediate(self) -> bool:
        return bool(self.hidden_weight or self.attention_weight)


LayerStrategy = Literal["importance", "top", "alternate"]


ImportanceMethod = Literal["auto", "gradient", "magnitude"]


@dataclass(frozen=True)
class PruneConfig:
    heads: int | None = None  # keep the N most important attention heads in every layer
    heads_global: int | None = None  # keep the N most important heads ranked across layers (layers may differ)
    heads_global_ratio: float | None = None  # keep this share of the heads, ranked across layers
    layers: int | None = None  # keep K encoder layers, chosen by --layer-strategy
    drop_layers: tuple[int, ...] = ()  # remove these encoder layers (0-based)
    layer_strategy: LayerStrategy = "importance"  # importance, top (drop the top layers) or alternate (every other)
    ffn: float | None = None  # keep this share of the intermediate neurons of every feed-forward block
    ffn_size: int | None = None  # keep N intermediate neurons in every feed-forward block
    importance: ImportanceMethod = "auto"  # gradient (needs data), magnitude, or auto: gradient when data exists
    importance_samples: int = 512  # labelled examples used to score heads, neurons and layers
    data: DataConfig = field(default_factory=DataConfig)
    recover: TrainConfig | None = None  # fine-tune after pruning with these options (None: no recovery)
    distill: bool = False  # recover by distilling from the unpruned parent instead of plain fine-tuning
    distill_loss: DistillLoss = field(default_factory=DistillLoss)
    iterative: int = 1  # prune in S steps with importance re-scored (and recovery) after each

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = below_minimum(self, ("heads", "layers", "ffn_size", "importance_samples", "iterative"))
        if self.heads_global is not None and self.heads_global < 1:
            problems.append(f"--heads-global must be at least 1 head, got {self.heads_global}")
        if self.heads_global_ratio is not None and not 0 < self.heads_global_ratio <= 1:
            problems.append(f"--heads-global as a share must be in (0, 1], got {self.heads_global_ratio}")
        if sum(x is not None for x in (self.heads, self.heads_global, self.heads_global_ratio)) > 1:
            problems.append("give only one of --heads and --heads-global")
        if self.layers is not None and self.drop_layers:
            problems.append("give only one of --layers and --drop-layers")
        if any(i < 0 for i in self.drop_layers):
            problems.append(f"--drop-layers takes 0-based layer indices, got {list(self.drop_layers)}")
        if self.ffn is not None and not 0 < self.ffn <= 1:
            problems.append(f"--ffn must be a fraction in (0, 1], got {self.ffn}")
        if self.ffn is not None and self.ffn_size is not None:
            problems.append("give only one of --ffn and --ffn-size")
        if not self.prunes_anything:
            problems.append("nothing to prune: give --heads, --heads-global, --layers, --drop-layers, --ffn or "
                            "--ffn-size")
        if self.distill and self.recover is None:
            problems.append("--distill trains the pruned model; give --recover-epochs or --recover-steps too")
        return problems

    @property
    def prunes_anything(self) -> bool:
        return any(x is not None for x in (self.heads, self.heads_global, self.heads_global_ratio, self.layers,
                                           self.ffn, self.ffn_size)) or bool(self.drop_layers)


@dataclass(frozen=True)
class DistillConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: DistillLoss = field(default_factory=DistillLoss)
    student: str | None = None  # an existing artifact to train as the student (e.g. a pruned one)
    student_layers: int | None = None  # make the student from the teacher with K evenly spaced layers
    layer_map: tuple[int, ...] | None = None  # the teacher layer of each student layer (0-based)

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = below_minimum(self, ("student_layers",))
        if self.student is not None and self.student_layers is not None:
            problems.append("--student-layers K makes a student from the teacher; with --student give the layer "
                            "mapping as --student-layers 0,2,5 instead")
        if self.student is None and self.student_layers is None and self.layer_map is None:
            problems.append("no student: pass --student DIR (an artifact) or --student-layers K to make one from "
                            "the teacher")
        if self.layer_map is not None:
            if not self.layer_map or any(i < 0 for i in self.layer_map):
                problems.append(f"the layer mapping must list 0-based teacher layers, got {list(self.layer_map)}")
            elif self.student is None and list(self.layer_map) != sorted(set(self.layer_map)):
                problems.append(f"a student made from teacher layers {list(self.layer_map)} needs them distinct and "
                                "in increasing order")
        return problems
