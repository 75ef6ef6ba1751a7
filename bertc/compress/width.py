"""Hidden-width pruning: keep some of the hidden (residual-stream) channels everywhere in the model.

The width pruning of CoFi (Xia et al. 2022) and Minitron (2024): the embeddings, every projection that reads or
writes the residual stream, every LayerNorm on it, the pooler and the classifier lose the same channels. Attention
heads keep their width, so a model of hidden size 256 may keep 12 heads of 32; config.json records the real head
counts (``bertc_heads_per_layer``) beside the nominal ``hidden_size / head_size`` transformers needs.
"""

from __future__ import annotations

import torch
from torch import nn

from bertc.errors import BertcError
from bertc.modeling import PrunedAttention, base_model, encoder_layers, head_size, record_layer_shapes_, shrink_linear


def shrink_layer_norm(norm: nn.LayerNorm, index: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(len(index), eps=norm.eps, device=norm.weight.device, dtype=norm.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(norm.weight.index_select(0, index))
        new.bias.copy_(norm.bias.index_select(0, index))
    return new


def shrink_embedding(embedding: nn.Embedding, index: torch.Tensor) -> nn.Embedding:
    weight = embedding.weight.detach().index_select(1, index)
    new = nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=embedding.padding_idx, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
    return new


def keep_hidden_(model, channels: torch.Tensor) -> None:
    """Keep only the listed hidden (residual-stream) channels everywhere: the embeddings, every projection that
    reads or writes the residual stream, every LayerNorm on it, the pooler and the classifier (CoFi's and
    Minitron's width pruning). Attention heads keep their width, so q/k/v keep their output rows; the config's
    nominal head count becomes hidden_size / head_size and the real per-layer counts are recorded."""
    config, head_dim = model.config, head_size(model)
    if len(channels) % head_dim:
        raise BertcError(f"a hidden width of {len(channels)} is not a multiple of the head size {head_dim}")
    index = torch.sort(channels).values.to(next(model.parameters()).device)
    base = base_model(model)
    embeddings = base.embeddings
    embedding_size = getattr(config, "embedding_size", config.hidden_size)
    if getattr(base, "embeddings_project", None) is not None:  # ELECTRA with narrower embeddings: project into ours
        base.embeddings_project = shrink_linear(base.embeddings_project, out_index=index)
    else:
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            if getattr(embeddings, name, None) is not None:
                setattr(embeddings, name, shrink_embedding(getattr(embeddings, name), index))
        embeddings.LayerNorm = shrink_layer_norm(embeddings.LayerNorm, index)
        embedding_size = len(index)
    for layer in encoder_layers(model):
        attention = layer.attention
        if isinstance(attention, PrunedAttention):
            attention.bias = nn.Parameter(attention.bias.detach().index_select(0, index))
        else:
            for name in ("query", "key", "value"):
                setattr(attention.self, name, shrink_linear(getattr(attention.self, name), in_index=index))
            attention.output.dense = shrink_linear(attention.output.dense, out_index=index)
            attention = attention.output
        attention.LayerNorm = shrink_layer_norm(attention.LayerNorm, index)
        layer.intermediate.dense = shrink_linear(layer.intermediate.dense, in_index=index)
        layer.output.dense = shrink_linear(layer.output.dense, out_index=index)
        layer.output.LayerNorm = shrink_layer_norm(layer.output.LayerNorm, index)
    keep_head_channels_(model, base, index)
    config.hidden_size = len(index)
    config.num_attention_heads = len(index) // head_dim
    if hasattr(config, "embedding_size"):
        config.embedding_size = embedding_size
    record_layer_shapes_(model)  # the real head counts differ from the nominal one, so they are recorded


def keep_head_channels_(model, base, index: torch.Tensor) -> None:
    """The pooler (BERT) or the classifier's dense layer (RoBERTa, ELECTRA) maps hidden to hidden: keep the same
    channels on both sides, so its output stays aligned with the smaller classifier input."""
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        pooler.dense = shrink_linear(pooler.dense, out_index=index, in_index=index)
    classifier = model.classifier
    if isinstance(classifier, nn.Linear):
        model.classifier = shrink_linear(classifier, in_index=index)
    elif hasattr(classifier, "dense") and hasattr(classifier, "out_proj"):
        classifier.dense = shrink_linear(classifier.dense, out_index=index, in_index=index)
        classifier.out_proj = shrink_linear(classifier.out_proj, in_index=index)
    else:
        raise BertcError(f"bertc does not know the classifier head of {type(model).__name__}; hidden-width "
                         "pruning needs a linear or dense + out_proj head")
