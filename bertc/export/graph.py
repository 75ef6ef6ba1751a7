"""Reading exported encoder graphs: fused-operator counts, which encoder layer each node belongs to, head checks.

An ONNX graph is stored in topological order, and in post-norm families (BERT, DistilBERT, DeBERTa) every encoder
layer ends its attention block and its feed-forward block with a LayerNorm (plain, Skip- or, for the embeddings,
EmbedLayerNormalization). Counting the LayerNorms seen before a node therefore tells which layer the node
computes, with no reliance on node names (the fuser renames what it fuses). Quantization and fp16 conversion use
these groups to keep whole layers in float. Pre-norm graphs (ModernBERT: no attention norm in layer 0, a final
norm, none for a headless layer) have no such count, so they have no groups and are treated as a whole.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from bertc.errors import BertcError
from bertc.families import known_family

# The operators the ORT transformer optimizer fuses for BERT, in the order they are reported.
FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu")
LAYER_NORMS = frozenset({"LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                         "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"})
EMBEDDINGS, HEAD = "embeddings", "classifier"
MODEL_TYPE_KEY = "bertc_model_type"  # metadata of exported graphs: the transformers model_type they came from


def load_graph(file: Path) -> onnx.ModelProto:
    """The ONNX model of an artifact; a missing, truncated or foreign file is reported as damaged."""
    if not file.is_file():
        raise BertcError(f"{file} is missing; the artifact is damaged, re-create it with `bertc export`")
    try:
        proto = onnx.load(str(file))
    except Exception as err:  # protobuf's DecodeError, onnx's own errors, OSError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BertcError(f"{file} is damaged ({first}); re-create the artifact with `bertc export`") from err
    if not proto.graph.node:
        raise BertcError(f"{file} is damaged (it holds no graph); re-create the artifact with `bertc export`")
    return proto


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each fused operator type the graph has (zeros included, so absence is visible)."""
    counts = Counter(node.op_type for node in model.graph.node)
    return {op: counts.get(op, 0) for op in FUSED_OPS}


def name_nodes_(model: onnx.ModelProto) -> None:
    """Give every node a unique name: quantization and fp16 conversion select nodes by name."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_bertc_{i}"
        seen.add(node.name)


def set_model_type_(model: onnx.ModelProto, model_type: str) -> None:
    """Record the model_type the graph came from in its metadata (it decides how the graph splits in layers)."""
    for prop in model.metadata_props:
        if prop.key == MODEL_TYPE_KEY:
            prop.value = model_type
            return
    model.metadata_props.add(key=MODEL_TYPE_KEY, value=model_type)


def model_type(model: onnx.ModelProto) -> str | None:
    return next((prop.value for prop in model.metadata_props if prop.key == MODEL_TYPE_KEY), None)


def splits_in_layers(model_type_name: str | None) -> bool:
    """Whether graphs of this model_type split in layers by their LayerNorms (unknown types: assumed BERT-like)."""
    family = known_family(model_type_name)
    return family is None or family.post_norm


def layer_groups(model: onnx.ModelProto, num_layers: int) -> dict[str, str] | None:
    """Node name -> "embeddings", "layer.<i>" or "classifier"; None when the graph does not have the expected
    2 LayerNorms per layer plus one for the embeddings (e.g. an unoptimized export at opset < 17), or comes from
    a pre-norm family (see the module docstring)."""
    norms = sum(node.op_type in LAYER_NORMS for node in model.graph.node)
    if norms != 2 * num_layers + 1 or not splits_in_layers(model_type(model)):
        return None
    groups, seen = {}, 0
    for node in model.graph.node:
        if seen == 0:
            groups[node.name] = EMBEDDINGS
        elif seen > 2 * num_layers:
            groups[node.name] = HEAD
        else:
            groups[node.name] = f"layer.{(seen - 1) // 2}"
        if node.op_type in LAYER_NORMS:
            seen += 1
    return groups


def count_layers(model: onnx.ModelProto) -> int:
    """Encoder layers of a fused graph, from its LayerNorms (2 per layer, 1 for the embeddings)."""
    return max(0, (sum(node.op_type in LAYER_NORMS for node in model.graph.node) - 1) // 2)


def group_order(num_layers: int) -> list[str]:
    return [EMBEDDINGS, *(f"layer.{i}" for i in range(num_layers)), HEAD]


def attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def check_attention(model: onnx.ModelProto, heads_per_layer: list[int]) -> dict:
    """Compare the fused Attention nodes with the model: one per layer that has heads, each with that layer's
    head count. A wrong head count gives wrong outputs silently, so it is always an error; too few fused nodes
    only costs speed and is reported (the caller decides whether that is an error)."""
    expected = sum(1 for h in heads_per_layer if h > 0)
    nodes = [node for node in model.graph.node if node.op_type in ("Attention", "MultiHeadAttention")]
    groups = layer_groups(model, len(heads_per_layer))
    found, wrong = [], []
    for node in nodes:
        heads = attribute(node, "num_heads")
        group = groups.get(node.name) if groups else None
        layer = int(group.split(".")[1]) if group and group.startswith("layer.") else None
        found.append({"node": node.name, "layer": layer, "num_heads": heads})
        if layer is not None and heads != heads_per_layer[layer]:
            wrong.append(f"{node.name} in layer {layer} has num_heads={heads}, the layer has "
                         f"{heads_per_layer[layer]}")
    if groups is None:  # cannot place nodes in layers: at least check the multiset of head counts
        expected_heads = sorted(h for h in heads_per_layer if h > 0)
        got = sorted(f["num_heads"] for f in found)
        if len(got) == len(expected_heads) and got != expected_heads:
            wrong.append(f"fused head counts {got} differ from the model's {expected_heads}")
    if wrong:
        raise BertcError("ONNX Runtime fused attention with the wrong number of heads, which gives wrong "
                         f"outputs: {'; '.join(wrong[:3])}. Export with --optimize basic, or upgrade "
                         "onnxruntime (>= 1.21 detects heads per layer)")
    return {"attention_layers": expected, "fused_attention": len(nodes), "complete": len(nodes) >= expected,
            "nodes": found}
