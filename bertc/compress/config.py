"""The options of `bertc prune` and `bertc distill`, and the distillation loss both use (light: no torch import).

Their data options are a :class:`bertc.data.config.DataConfig` whose training data may be left out: the stages
then use the data recorded in the artifact (``DataConfig.resolve``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bertc.checks import below_minimum, check_config
from bertc.data.config import DataConfig, TransferConfig
from bertc.errors import BertcError
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


ImportanceMethod = Literal["auto", "gradient", "activation", "magnitude"]


Activation = Literal["gelu_tanh", "gelu_fast", "relu"]


def parse_layer_spec(spec: str, flag_name: str) -> tuple[list[int] | None, dict[int, int]]:
    """A per-layer size spec: '12,12,8' gives every layer's size (returned as a list); '-1:8' or '5:8,4:10' gives
    the sizes of the named layers only (returned as {layer: size}, negative layers counting from the last)."""
    parts = [part.strip() for part in spec.split(",")]
    if not spec.strip() or not all(parts):
        raise BertcError(f"{flag_name} {spec!r} has an empty entry; give every layer's size (12,12,8) or named "
                         "layers (-1:8 or 5:8,4:10)")
    named = [":" in part for part in parts]
    if any(named) and not all(named):
        raise BertcError(f"{flag_name} {spec!r} mixes sizes and layer:size entries; give every layer's size "
                         "(12,12,8) or named layers only (-1:8)")
    try:
        if not any(named):
            sizes = [int(part) for part in parts]
            values, by_layer = sizes, None
        else:
            pairs = [tuple(int(x) for x in part.split(":")) for part in parts]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError
            layers = [layer for layer, _ in pairs]
            if len(set(layers)) != len(layers):
                raise BertcError(f"{flag_name} {spec!r} names a layer twice; give each layer once")
            by_layer = dict(pairs)
            values = list(by_layer.values())
    except ValueError:
        raise BertcError(f"{flag_name} takes whole numbers: every layer's size (12,12,8) or layer:size entries "
                         f"(-1:8 or 5:8,4:10), got {spec!r}") from None
    if any(v < 0 for v in values):
        raise BertcError(f"{flag_name} {spec!r} has a negative size; sizes are 0 or more")
    return (values, {}) if by_layer is None else (None, by_layer)


def layer_spec_problem(spec: str | None, flag_name: str) -> str | None:
    if spec is None:
        return None
    try:
        parse_layer_spec(spec, flag_name)
    except BertcError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class PruneConfig:
    heads: int | None = None  # keep the N most important attention heads in every layer
    heads_per_layer: str | None = None  # heads kept per layer: 12,12,12,12,12,8 (every layer) or -1:8 (named layers)
    heads_global: int | None = None  # keep the N most important heads ranked across layers (layers may differ)
    heads_global_ratio: float | None = None  # keep this share of the heads, ranked across layers
    layers: int | None = None  # keep K encoder layers, chosen by --layer-strategy
    drop_layers: tuple[int, ...] = ()  # remove these encoder layers (0-based)
    layer_strategy: LayerStrategy = "importance"  # importance, top (drop the top layers) or alternate (every other)
    ffn: float | None = None  # keep this share of the intermediate neurons of every feed-forward block
    ffn_size: int | None = None  # keep N intermediate neurons in every feed-forward block
    ffn_per_layer: str | None = None  # FFN neurons kept per layer: 1536,...,768 (every layer) or -1:768 (named)
    hidden: int | None = None  # keep N hidden (embedding) channels across the whole model, a multiple of the head size
    vocab: str | None = None  # keep only the tokens these texts use (a data file), plus the special tokens
    vocab_top: int = 0  # with --vocab, also keep the tokenizer's N lowest-id (most common) tokens
    max_positions: int | None = None  # keep N position embeddings: the longest input, in tokens, the model will read
    activation: Activation | None = None  # replace the FFN activation (GELU) with a cheaper approximation
    importance: ImportanceMethod = "auto"  # gradient or activation (need data), magnitude, or auto: gradient when
    #                                        data exists
    importance_samples: int = 512  # labelled examples used to score heads, neurons and layers
    data: DataConfig = field(default_factory=DataConfig)
    recover: TrainConfig | None = None  # fine-tune after pruning with these options (None: no recovery)
    distill: bool = False  # recover by distilling from the unpruned parent instead of plain fine-tuning
    distill_loss: DistillLoss = field(default_factory=DistillLoss)
    iterative: int = 1  # prune in S steps with importance re-scored (and recovery) after each

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = below_minimum(self, ("heads", "layers", "ffn_size", "importance_samples", "iterative", "hidden",
                                        "max_positions"))
        for name in ("heads_per_layer", "ffn_per_layer"):
            if problem := layer_spec_problem(getattr(self, name), "--" + name.replace("_", "-")):
                problems.append(problem)
        if self.vocab_top < 0:
            problems.append(f"--vocab-top must be 0 or more, got {self.vocab_top}")
        if self.vocab_top and self.vocab is None:
            problems.append("--vocab-top adds to the tokens of --vocab DATA; give --vocab too")
        if self.vocab is not None and not self.vocab.strip():
            problems.append("--vocab needs a data file of texts")
        if self.heads_global is not None and self.heads_global < 1:
            problems.append(f"--heads-global must be at least 1 head, got {self.heads_global}")
        if self.heads_global_ratio is not None and not 0 < self.heads_global_ratio <= 1:
            problems.append(f"--heads-global as a share must be in (0, 1], got {self.heads_global_ratio}")
        if sum(x is not None for x in (self.heads, self.heads_global, self.heads_global_ratio,
                                       self.heads_per_layer)) > 1:
            problems.append("give only one of --heads, --heads-per-layer and --heads-global")
        if self.layers is not None and self.drop_layers:
            problems.append("give only one of --layers and --drop-layers")
        if any(i < 0 for i in self.drop_layers):
            problems.append(f"--drop-layers takes 0-based layer indices, got {list(self.drop_layers)}")
        if self.ffn is not None and not 0 < self.ffn <= 1:
            problems.append(f"--ffn must be a fraction in (0, 1], got {self.ffn}")
        if sum(x is not None for x in (self.ffn, self.ffn_size, self.ffn_per_layer)) > 1:
            problems.append("give only one of --ffn, --ffn-size and --ffn-per-layer")
        if not self.prunes_anything:
            problems.append("nothing to prune: give --heads, --heads-global, --layers, --drop-layers, --ffn, "
                            "--ffn-size, --hidden, --vocab, --max-positions or --activation")
        if self.distill and self.recover is None:
            problems.append("--distill trains the pruned model; give --recover-epochs or --recover-steps too")
        return problems

    @property
    def prunes_anything(self) -> bool:
        return any(x is not None for x in (
            self.heads, self.heads_global, self.heads_global_ratio, self.heads_per_layer, self.layers, self.ffn,
            self.ffn_size, self.ffn_per_layer, self.hidden, self.vocab, self.max_positions, self.activation,
        )) or bool(self.drop_layers)

    @property
    def prunes_structure(self) -> bool:
        """Whether heads, layers, FFN neurons or hidden channels go (what importance scoring is needed for)."""
        return any(x is not None for x in (
            self.heads, self.heads_global, self.heads_global_ratio, self.heads_per_layer, self.layers, self.ffn,
            self.ffn_size, self.ffn_per_layer, self.hidden)) or bool(self.drop_layers)


@dataclass(frozen=True)
class DistillConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: DistillLoss = field(default_factory=DistillLoss)
    student: str | None = None  # the student: an artifact or classifier with the teacher's labels, or a pretrained
    # encoder given a fresh head (minilm, a model directory, a Hub id); its tokenizer and width may differ
    student_layers: int | None = None  # make the student from the teacher with K evenly spaced layers
    layer_map: tuple[int, ...] | None = None  # the teacher layer of each student layer (0-based)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        problems = below_minimum(self, ("student_layers",))
        if self.student is not None and self.student_layers is not None:
            problems.append("--student-layers K makes a student from the teacher; with --student give the layer "
                            "mapping as --student-layers 0,2,5 instead")
        if self.student is None and self.student_layers is None and self.layer_map is None:
            problems.append("no student: pass --student (an artifact, a classifier, or a pretrained encoder such as "
                            "minilm) or --student-layers K to make one from the teacher")
        if self.layer_map is not None:
            if not self.layer_map or any(i < 0 for i in self.layer_map):
                problems.append(f"the layer mapping must list 0-based teacher layers, got {list(self.layer_map)}")
            elif self.student is None and list(self.layer_map) != sorted(set(self.layer_map)):
                problems.append(f"a student made from teacher layers {list(self.layer_map)} needs them distinct and "
                                "in increasing order")
        return problems
