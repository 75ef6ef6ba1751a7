"""Size of an encoder classifier: parameters, forward FLOPs and widths, before and after compression.

FLOPs are counted analytically for one sequence of ``seq_len`` tokens (2 FLOPs per multiply-add, matrix
products only: LayerNorm, softmax, GELU and the embedding lookup are a few percent and are left out), so they
depend only on the per-layer shapes and are the same on every machine.
"""

from __future__ import annotations

from bertc.modeling import count_parameters, encoder_layers, family_of, head_size, layer_shapes


def layer_flops(hidden: int, heads: int, head_dim: int, ffn: int, seq_len: int, gated: bool = False) -> int:
    """Forward FLOPs of one encoder layer for one sequence (``gated``: the FFN input projection also computes
    a gate per neuron, as ModernBERT's GeGLU)."""
    inner = heads * head_dim
    projections = 2 * seq_len * hidden * inner * 4  # query, key, value and the output projection
    attention = 2 * seq_len * seq_len * inner * 2  # scores (q k^T) and the weighted sum of values
    feed_forward = 2 * seq_len * hidden * ffn * (3 if gated else 2)
    return projections + attention + feed_forward


def model_flops(model, seq_len: int = 128) -> int:
    """Forward FLOPs of the whole classifier (encoder layers, pooler and classifier) for one sequence."""
    heads, ffn = layer_shapes(model)
    hidden, head_dim = model.config.hidden_size, head_size(model)
    gated = family_of(model).ffn_gated()
    encoder = sum(layer_flops(hidden, h, head_dim, f, seq_len, gated) for h, f in zip(heads, ffn))
    head = 2 * hidden * hidden + 2 * hidden * model.config.num_labels  # pooler on [CLS] and the classifier
    return encoder + head


def size_report(model, seq_len: int = 128) -> dict:
    """Parameters (all and encoder-only) and FLOPs of ``model``; what the manifest records before/after."""
    heads, ffn = layer_shapes(model)
    return {
        "num_parameters": count_parameters(model),
        "encoder_parameters": sum(count_parameters(layer) for layer in encoder_layers(model)),
        "flops": model_flops(model, seq_len),
        "flops_seq_len": seq_len,
        "num_layers": len(heads),
        "heads_per_layer": heads,
        "ffn_per_layer": ffn,
        "hidden_size": model.config.hidden_size,
        "vocab_size": model.get_input_embeddings().num_embeddings,
        "max_position_embeddings": model.config.max_position_embeddings,
    }


def compare_sizes(before: dict, after: dict) -> dict:
    """after / before for parameters and FLOPs (lower is smaller)."""
    return {key: after[key] / before[key] if before[key] else None
            for key in ("num_parameters", "encoder_parameters", "flops")}
