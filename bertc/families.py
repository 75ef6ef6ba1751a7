"""Where things are in each encoder family bertc works on: one adapter per family.

Every stage that reaches inside a model (pruning heads, FFN neurons and layers, importance scores, distillation
taps, FLOPs, per-layer shapes in config.json) asks the model's family instead of naming modules itself, so adding
a family means adding one adapter here and its tests (tests/families/).

An adapter knows a layer's attention projections (separate q/k/v, or a fused ``Wqkv`` holding q, k and v rows
one after the other), its output projection, its feed-forward input and output (plain, or gated like
ModernBERT's GeGLU ``Wi`` whose rows are the value half then the gate half), which inputs the model takes, and
what ONNX Runtime's fuser can do with its graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bertc.errors import BertcError


class HeadlessAttention(nn.Module):
    """Stands in for an attention block whose heads were all pruned (subclasses differ in what they return)."""


class PrunedAttention(HeadlessAttention):
    """BERT/DeBERTa-style attention with no heads: only the output bias and the residual LayerNorm remain.

    With no heads the output projection sees an empty input, so its result is just its bias.
    """

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, hidden_states, *args, **kwargs):
        return self.LayerNorm(hidden_states + self.bias), None


class BiasOnlyAttention(HeadlessAttention):
    """Attention with no heads in families whose attention module returns only the projection (the residual and
    the norm live in the layer): its output is the output projection's bias, or zeros without one."""

    def __init__(self, hidden_size: int, bias: bool):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.hidden_size = hidden_size

    def forward(self, hidden_states, *args, **kwargs):
        if self.bias is None:
            return torch.zeros_like(hidden_states), None
        return self.bias.expand_as(hidden_states), None


def shrink_linear(linear: nn.Linear, out_index: torch.Tensor | None = None,
                  in_index: torch.Tensor | None = None) -> nn.Linear:
    """A smaller copy of ``linear`` keeping the given output rows and input columns."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if out_index is not None:
        weight = weight.index_select(0, out_index)
        bias = bias.index_select(0, out_index) if bias is not None else None
    if in_index is not None:
        weight = weight.index_select(1, in_index)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def with_bias(linear: nn.Linear) -> torch.Tensor:
    """The weight with the bias as an extra input column: (out, in + 1)."""
    if linear.bias is None:
        return linear.weight
    return torch.cat([linear.weight, linear.bias[:, None]], dim=1)


def blank_linear(old: nn.Linear, in_features: int | None = None, out_features: int | None = None) -> nn.Linear:
    """A linear like ``old`` with new sizes and untrained weights (loaded afterwards)."""
    return nn.Linear(old.in_features if in_features is None else in_features,
                     old.out_features if out_features is None else out_features, bias=old.bias is not None,
                     device=old.weight.device, dtype=old.weight.dtype)


def head_rows(heads: list[int], head_dim: int, device) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in sorted(heads)]).to(device)


def get_path(root: nn.Module, path: str):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def set_path(root: nn.Module, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        root = getattr(root, part)
    setattr(root, last, value)


@dataclass(frozen=True)
class Family:
    """A family with separate query/key/value projections; subclasses override what differs."""

    name: str
    model_types: tuple[str, ...]
    layers_path: str  # the encoder layers, from the base model
    attention_path: str  # the attention block a headless layer replaces, from the layer
    query_path: str  # q, k and v projections, from the layer
    key_path: str
    value_path: str
    attention_out_path: str  # the projection of the concatenated heads back to the hidden width
    ffn_in_path: str
    ffn_out_path: str
    takes_token_types: bool = True
    # ONNX Runtime's BERT fuser turns this family's eager attention into Attention nodes with per-layer num_heads
    fuses_attention: bool = True
    # each layer ends its attention and its feed-forward block with a LayerNorm (post-norm), so exported graphs
    # are split into layers by counting LayerNorms (bertc.export.graph.layer_groups)
    post_norm: bool = True
    # query/key projections give the real attention scores (no relative-position or rotary terms), so
    # distillation can compare attention maps
    attention_maps: bool = True
    # hidden-width, vocabulary and activation surgery (bertc.compress.width/vocabulary/activation) know this layout
    width_surgery: bool = False
    extra_head_paths: tuple[str, ...] = ()  # more projections whose rows are per head (DeBERTa's position ones)

    # --- layers
    def layers(self, model) -> nn.ModuleList:
        return get_path(base_model(model), self.layers_path)

    def set_layers(self, model, layers: nn.ModuleList) -> None:
        set_path(base_model(model), self.layers_path, layers)

    def layers_kept_(self, model, indices: list[int]) -> None:
        """Family bookkeeping after ``indices`` of the original layers were kept (layer indices, layer types)."""
        for new_index, layer in enumerate(self.layers(model)):  # caches key layers by index; keep them consistent
            for module in layer.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = new_index

    def rebuilt_(self, model) -> None:
        """Family fix-ups after a model of a pruned config is built, before its weights are loaded."""

    # --- attention
    def headless(self, layer) -> bool:
        return isinstance(get_path(layer, self.attention_path), HeadlessAttention)

    def head_count(self, layer, head_dim: int) -> int:
        if self.headless(layer):
            return 0
        return get_path(layer, self.query_path).out_features // head_dim

    def attention_out(self, layer) -> nn.Linear | None:
        return None if self.headless(layer) else get_path(layer, self.attention_out_path)

    def value_weight(self, layer) -> torch.Tensor:
        """The value projection with its bias as an extra column: (heads * head_dim, in + 1), head after head."""
        return with_bias(get_path(layer, self.value_path))

    def query_key(self, layer) -> tuple[nn.Module, nn.Module] | None:
        """Modules whose outputs are the layer's queries and keys (for attention maps); None when headless."""
        if self.headless(layer) or not self.attention_maps:
            return None
        return get_path(layer, self.query_path), get_path(layer, self.key_path)

    def keep_heads_(self, layer, heads: list[int], head_dim: int) -> None:
        """Keep only the listed heads of one layer, slicing q/k/v rows and output columns."""
        if not heads:
            self.remove_attention_(layer)
            return
        rows = head_rows(heads, head_dim, get_path(layer, self.query_path).weight.device)
        for path in (self.query_path, self.key_path, self.value_path, *self.present(layer, self.extra_head_paths)):
            set_path(layer, path, shrink_linear(get_path(layer, path), out_index=rows))
        set_path(layer, self.attention_out_path, shrink_linear(get_path(layer, self.attention_out_path),
                                                               in_index=rows))
        self.set_head_count_(layer, len(heads), head_dim)

    def resize_heads_(self, layer, heads: int, head_dim: int) -> None:
        """Give one layer ``heads`` heads with untrained weights (loaded afterwards)."""
        if heads == 0:
            self.remove_attention_(layer)
            return
        width = heads * head_dim
        for path in (self.query_path, self.key_path, self.value_path, *self.present(layer, self.extra_head_paths)):
            set_path(layer, path, blank_linear(get_path(layer, path), out_features=width))
        set_path(layer, self.attention_out_path, blank_linear(get_path(layer, self.attention_out_path),
                                                              in_features=width))
        self.set_head_count_(layer, heads, head_dim)

    @staticmethod
    def present(layer, paths: tuple[str, ...]) -> list[str]:
        found = []
        for path in paths:
            try:
                get_path(layer, path)
            except AttributeError:
                continue
            found.append(path)
        return found

    def set_head_count_(self, layer, heads: int, head_dim: int) -> None:
        """Attributes the attention's forward reads (reshapes use them in some families)."""
        module = get_path(layer, self.query_path.rsplit(".", 1)[0]) if "." in self.query_path else layer
        for name, value in (("num_attention_heads", heads), ("n_heads", heads), ("num_heads", heads),
                            ("all_head_size", heads * head_dim)):
            if hasattr(module, name):
                setattr(module, name, value)

    def remove_attention_(self, layer) -> None:
        out = get_path(layer, self.attention_out_path)
        block = BiasOnlyAttention(out.out_features, out.bias is not None).to(out.weight.device)
        if out.bias is not None:
            with torch.no_grad():
                block.bias.copy_(out.bias)
        set_path(layer, self.attention_path, block)

    # --- feed-forward
    def ffn_size(self, layer) -> int:
        return get_path(layer, self.ffn_out_path).in_features

    def ffn_in_weight(self, layer) -> torch.Tensor:
        """What feeds each FFN neuron, a row per neuron with the bias as an extra column: (ffn, in + 1)."""
        return with_bias(get_path(layer, self.ffn_in_path))

    def ffn_out(self, layer) -> nn.Linear:
        return get_path(layer, self.ffn_out_path)

    def keep_neurons_(self, layer, neurons: torch.Tensor) -> None:
        inner = get_path(layer, self.ffn_in_path)
        neurons = torch.sort(neurons).values.to(inner.weight.device)
        set_path(layer, self.ffn_in_path, shrink_linear(inner, out_index=neurons))
        set_path(layer, self.ffn_out_path, shrink_linear(get_path(layer, self.ffn_out_path), in_index=neurons))

    def resize_ffn_(self, layer, size: int) -> None:
        set_path(layer, self.ffn_in_path, blank_linear(get_path(layer, self.ffn_in_path), out_features=size))
        set_path(layer, self.ffn_out_path, blank_linear(get_path(layer, self.ffn_out_path), in_features=size))

    # --- sizes
    def ffn_gated(self) -> bool:
        return False

    def intermediate_size(self, config) -> int:
        return config.intermediate_size


@dataclass(frozen=True)
class BertFamily(Family):
    """BERT and its layout twins; attention.output holds the residual LayerNorm, so a headless layer keeps it."""

    def remove_attention_(self, layer) -> None:
        out = layer.attention.output
        pruned = PrunedAttention(out.dense.out_features, out.LayerNorm.eps).to(out.dense.weight.device)
        with torch.no_grad():
            pruned.bias.copy_(out.dense.bias)
            pruned.LayerNorm.load_state_dict(out.LayerNorm.state_dict())
        layer.attention = pruned


@dataclass(frozen=True)
class DistilBertFamily(Family):
    def intermediate_size(self, config) -> int:
        return config.hidden_dim


@dataclass(frozen=True)
class ModernBertFamily(Family):
    """Fused ``Wqkv`` (q rows, then k, then v), gated FFN ``Wi`` (value half, then gate half), alternating global
    and local attention by ``config.layer_types``; layer 0 has no attention norm (``attn_norm`` is Identity)."""

    FIRST_NORM_KEY = "bertc_first_layer_attn_norm"

    def head_count(self, layer, head_dim: int) -> int:
        if self.headless(layer):
            return 0
        return layer.attn.Wqkv.out_features // (3 * head_dim)

    def value_weight(self, layer) -> torch.Tensor:
        weight = with_bias(layer.attn.Wqkv)
        return weight[2 * weight.shape[0] // 3:]

    def ffn_in_weight(self, layer) -> torch.Tensor:
        weight = with_bias(layer.mlp.Wi)  # a neuron's value row and its gate row, side by side
        return torch.cat(weight.chunk(2, dim=0), dim=1)

    def qkv_rows(self, heads: list[int], total: int, head_dim: int, device) -> torch.Tensor:
        rows = head_rows(heads, head_dim, device)
        return torch.cat([rows + part * total * head_dim for part in range(3)])

    def keep_heads_(self, layer, heads: list[int], head_dim: int) -> None:
        if not heads:
            self.remove_attention_(layer)
            return
        attn = layer.attn
        total = self.head_count(layer, head_dim)
        attn.Wqkv = shrink_linear(attn.Wqkv, out_index=self.qkv_rows(heads, total, head_dim, attn.Wqkv.weight.device))
        attn.Wo = shrink_linear(attn.Wo, in_index=head_rows(heads, head_dim, attn.Wo.weight.device))

    def resize_heads_(self, layer, heads: int, head_dim: int) -> None:
        if heads == 0:
            self.remove_attention_(layer)
            return
        attn = layer.attn
        attn.Wqkv = blank_linear(attn.Wqkv, out_features=3 * heads * head_dim)
        attn.Wo = blank_linear(attn.Wo, in_features=heads * head_dim)

    def ffn_size(self, layer) -> int:
        return layer.mlp.Wo.in_features

    def ffn_gated(self) -> bool:
        return True

    def keep_neurons_(self, layer, neurons: torch.Tensor) -> None:
        mlp = layer.mlp
        size = self.ffn_size(layer)
        neurons = torch.sort(neurons).values.to(mlp.Wi.weight.device)
        mlp.Wi = shrink_linear(mlp.Wi, out_index=torch.cat([neurons, neurons + size]))
        mlp.Wo = shrink_linear(mlp.Wo, in_index=neurons)

    def resize_ffn_(self, layer, size: int) -> None:
        layer.mlp.Wi = blank_linear(layer.mlp.Wi, out_features=2 * size)
        layer.mlp.Wo = blank_linear(layer.mlp.Wo, in_features=size)

    def layers_kept_(self, model, indices: list[int]) -> None:
        config = model.config
        config.layer_types = [config.layer_types[i] for i in indices]
        super().layers_kept_(model, indices)
        layers = self.layers(model)
        if layers and not isinstance(layers[0].attn_norm, nn.Identity):
            setattr(config, self.FIRST_NORM_KEY, True)  # the config alone would rebuild layer 0 without it
        elif hasattr(config, self.FIRST_NORM_KEY):
            delattr(config, self.FIRST_NORM_KEY)

    def rebuilt_(self, model) -> None:
        if getattr(model.config, self.FIRST_NORM_KEY, False):
            config, first = model.config, self.layers(model)[0]
            first.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


def base_model(model) -> nn.Module:
    return getattr(model, model.base_model_prefix)


BERT = BertFamily(
    name="bert", model_types=("bert", "roberta", "xlm-roberta", "camembert", "electra"),
    layers_path="encoder.layer", attention_path="attention", query_path="attention.self.query",
    key_path="attention.self.key", value_path="attention.self.value", attention_out_path="attention.output.dense",
    ffn_in_path="intermediate.dense", ffn_out_path="output.dense", width_surgery=True)
DISTILBERT = DistilBertFamily(
    name="distilbert", model_types=("distilbert",), layers_path="transformer.layer", attention_path="attention",
    query_path="attention.q_lin", key_path="attention.k_lin", value_path="attention.v_lin",
    attention_out_path="attention.out_lin", ffn_in_path="ffn.lin1", ffn_out_path="ffn.lin2",
    takes_token_types=False)
# DeBERTa's attention adds content-to-position and position-to-content terms; when the position projections are
# not shared with q/k (share_att_key false) they have per-head rows too, and are pruned with the heads.
DEBERTA_V2 = BertFamily(
    name="deberta-v2", model_types=("deberta-v2",), layers_path="encoder.layer", attention_path="attention",
    query_path="attention.self.query_proj", key_path="attention.self.key_proj",
    value_path="attention.self.value_proj", attention_out_path="attention.output.dense",
    ffn_in_path="intermediate.dense", ffn_out_path="output.dense", fuses_attention=False, attention_maps=False,
    extra_head_paths=("attention.self.pos_key_proj", "attention.self.pos_query_proj"))
MODERNBERT = ModernBertFamily(
    name="modernbert", model_types=("modernbert",), layers_path="layers", attention_path="attn",
    query_path="attn.Wqkv", key_path="attn.Wqkv", value_path="attn.Wqkv", attention_out_path="attn.Wo",
    ffn_in_path="mlp.Wi", ffn_out_path="mlp.Wo", takes_token_types=False, fuses_attention=False,
    attention_maps=False, post_norm=False)

FAMILIES = (BERT, DISTILBERT, DEBERTA_V2, MODERNBERT)
SUPPORTED_MODEL_TYPES = tuple(t for family in FAMILIES for t in family.model_types)


def supported_text() -> str:
    return ", ".join(SUPPORTED_MODEL_TYPES)


def known_family(model_type: str | None) -> Family | None:
    return next((family for family in FAMILIES if model_type in family.model_types), None)


def family_for_type(model_type: str, source: str = "the model") -> Family:
    family = known_family(model_type)
    if family is not None:
        return family
    raise BertcError(f"{source} is a '{model_type}' model; bertc works on {supported_text()} encoders. "
                     "Pass one of those")


def family_of(model_or_config) -> Family:
    config = getattr(model_or_config, "config", model_or_config)
    return family_for_type(config.model_type)


def align_tokenizer_(tokenizer, model) -> None:
    """Make the tokenizer produce only the inputs the model takes: a BERT tokenizer paired with a DistilBERT or
    ModernBERT model would otherwise emit token_type_ids its forward does not accept (saved with the tokenizer,
    so ONNX graphs and every predictor get the same inputs)."""
    if not family_of(model).takes_token_types and "token_type_ids" in tokenizer.model_input_names:
        tokenizer.model_input_names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
