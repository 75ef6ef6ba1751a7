"""How much each attention head, FFN neuron and encoder layer matters: what pruning keeps.

Gradient importance follows Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): put a gate
xi_h on the output of head h and score it with I_h = sum over examples of |dL/dxi_h|. transformers 5.x has no
head masks, but none are needed: at xi = 1 the gate's gradient is the dot product of the head's slice of the
attention context (what enters the output projection) with that slice's gradient, so hooks on the output
projections read it off one ordinary backward pass. FFN neurons are scored the same way from the activations
entering the FFN output projection.

Layers are scored by ablation instead: the loss on the sample once a layer is removed, since dropping a whole
layer is too large a change for a first-order estimate. Removal is greedy (drop the least harmful layer,
measure again), so layers that only matter together are not both removed.

Activation importance follows Minitron (Muralidharan et al. 2024, "Compact Language Models via Pruning and
Knowledge Distillation"): forward passes only, no labels. A head scores the L2 norm of its slice of the
attention context, a neuron the magnitude of its activation, a hidden channel the magnitude of its residual-stream
LayerNorm outputs, each summed over the real (unpadded) tokens of the sample.

Without data, a weight-magnitude criterion scores heads by ||W_value[h]|| * ||W_out[:, h]|| and neurons by
||W_in[n]|| * ||W_out[:, n]||: a bound on how much they can add to the residual stream. It cannot rank layers.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from bertc.data.batching import encode, padded_batches
from bertc.data.labels import check_known_labels, label_ids
from bertc.data.load import TextDataset
from bertc.modeling import PrunedAttention, base_model, encoder_layers, family_of, head_size, layer_heads


@dataclass
class ImportanceScores:
    method: str  # "gradient" (Michel et al. 2019), "activation" (Minitron) or "magnitude" (weight norms, no data)
    heads: list[list[float]]  # per layer, per head; [] for a layer whose attention was removed
    ffn: list[list[float]]  # per layer, per intermediate neuron
    hidden: list[float] = field(default_factory=list)  # per hidden (residual-stream) channel
    layer_order: list[int] | None = None  # layers in greedy removal order, least important first (data only)
    layer_rounds: list[dict] = field(default_factory=list)  # loss with each candidate removed, per round
    base_loss: float | None = None  # mean cross-entropy of the unpruned model on the sample
    samples: int = 0  # labelled examples the scores were computed on

    def to_json(self, digits: int = 6) -> dict:
        def rounded(values):
            return [float(f"{v:.{digits}g}") for v in values]

        return {"method": self.method, "samples": self.samples, "base_loss": self.base_loss,
                "heads": [rounded(layer) for layer in self.heads], "layer_order": self.layer_order,
                "layer_rounds": self.layer_rounds, "ffn": [rounded(layer) for layer in self.ffn],
                "hidden": rounded(self.hidden)}


def compute_importance(model, tokenizer=None, dataset: TextDataset | None = None, label2id: dict | None = None, *,
                       samples: int = 512, max_length: int = 128, batch_size: int = 32, seed: int = 42,
                       layer_drops: int = 0, method: str = "gradient") -> ImportanceScores:
    """``method`` importance (gradient or activation) on a sample of ``dataset`` when given, else weight magnitude.

    ``layer_drops`` is how many rounds of greedy layer removal to measure (0: do not score layers).
    """
    if dataset is None:
        return magnitude_importance(model)
    batches = importance_batches(tokenizer, dataset, label2id, max_length, samples, batch_size, seed)
    if method == "activation":
        return activation_importance(model, batches, layer_drops=layer_drops)
    return gradient_importance(model, batches, layer_drops=layer_drops)


def importance_batches(tokenizer, dataset: TextDataset, label2id: dict, max_length: int, samples: int,
                       batch_size: int, seed: int) -> list[dict]:
    """A seeded random sample of ``dataset`` as padded, length-grouped batches with labels."""
    indices = list(range(len(dataset)))
    random.Random(seed).shuffle(indices)
    sample = dataset.select(sorted(indices[:samples]))
    check_known_labels(sample.labels, label2id, dataset.source, "Pass data of the task the model was trained on")
    ids = label_ids(sample.labels, label2id)
    encoded = encode(tokenizer, sample, max_length)
    batches = []
    for batch, inputs in padded_batches(tokenizer, encoded, batch_size, "pt"):
        inputs["labels"] = torch.tensor([ids[i] for i in batch])
        batches.append(dict(inputs))
    return batches


def gradient_importance(model, batches: list[dict], layer_drops: int = 0) -> ImportanceScores:
    """Head and neuron scores from one backward pass per batch; greedy layer ablation when ``layer_drops``."""
    family, layers = family_of(model), encoder_layers(model)
    head_dim = head_size(model)
    device = next(model.parameters()).device
    heads = [torch.zeros(layer_heads(layer, model), dtype=torch.float64) for layer in layers]
    ffn = [torch.zeros(family.ffn_size(layer), dtype=torch.float64) for layer in layers]

    def gate_gradient(scores: torch.Tensor, group: int):
        # For the context x (batch, seq, units*group) and its gradient g, dL/dgate of unit u in one example is
        # sum over seq and the unit's `group` dims of x*g; Michel et al. sum its absolute value over examples.
        def hook(module, args):
            x = args[0]

            def accumulate(g):  # returns None: the gradient itself is left unchanged
                scores.add_((x.detach() * g).unflatten(-1, (-1, group)).sum(dim=(1, 3)).abs().sum(0).double().cpu())

            if x.requires_grad:
                x.register_hook(accumulate)
        return hook

    handles = []
    for i, layer in enumerate(layers):
        if not family.headless(layer):
            handles.append(family.attention_out(layer).register_forward_pre_hook(gate_gradient(heads[i], head_dim)))
        handles.append(family.ffn_out(layer).register_forward_pre_hook(gate_gradient(ffn[i], 1)))
    hidden = HiddenChannelGate(model) if family.width_surgery else None
    handles.extend(hidden.handles if hidden else [])
    was_training = model.training
    model.eval()  # no dropout: score the model as it will run
    total_loss, count = 0.0, 0
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits
            loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            loss.backward()
            if hidden:
                hidden.end_batch()
            total_loss += loss.item()
            count += len(labels)
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    scores = ImportanceScores(method="gradient", heads=[h.tolist() for h in heads], ffn=[f.tolist() for f in ffn],
                              hidden=hidden.scores.tolist() if hidden else [],
                              base_loss=total_loss / max(count, 1), samples=count)
    if layer_drops:
        scores.layer_order, scores.layer_rounds = greedy_layer_order(model, batches, layer_drops)
    return scores


@torch.no_grad()
def activation_importance(model, batches: list[dict], layer_drops: int = 0) -> ImportanceScores:
    """Head, neuron and hidden-channel scores from forward passes (Minitron); greedy layer ablation when
    ``layer_drops``, which needs the batches' labels."""
    family, layers = family_of(model), encoder_layers(model)
    head_dim = head_size(model)
    device = next(model.parameters()).device
    heads = [torch.zeros(layer_heads(layer, model), dtype=torch.float64) for layer in layers]
    ffn = [torch.zeros(family.ffn_size(layer), dtype=torch.float64) for layer in layers]
    hidden = torch.zeros(model.config.hidden_size, dtype=torch.float64)
    real = {}  # the current batch's attention mask as (batch, seq, 1): padding must not score

    def add(scores: torch.Tensor, values: torch.Tensor) -> None:  # values (batch, seq, units)
        scores.add_((values * real["mask"]).sum(dim=(0, 1)).double().cpu())

    def head_norms(scores):
        return lambda module, args: add(scores, args[0].unflatten(-1, (-1, head_dim)).norm(dim=-1))

    def magnitudes(scores):
        return lambda module, args: add(scores, args[0].abs())

    handles = []
    for i, layer in enumerate(layers):
        if not family.headless(layer):
            handles.append(family.attention_out(layer).register_forward_pre_hook(head_norms(heads[i])))
        handles.append(family.ffn_out(layer).register_forward_pre_hook(magnitudes(ffn[i])))
    if family.width_surgery:
        handles.extend(norm.register_forward_hook(lambda module, args, output: add(hidden, output.abs()))
                       for norm in residual_outputs(model))
    was_training = model.training
    model.eval()
    total_loss, count = 0.0, 0
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            real["mask"] = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            logits = model(**batch).logits.float()
            total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            count += len(labels)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    scores = ImportanceScores(method="activation", heads=[h.tolist() for h in heads], ffn=[f.tolist() for f in ffn],
                              hidden=hidden.tolist() if family.width_surgery else [],
                              base_loss=total_loss / max(count, 1), samples=count)
    if layer_drops:
        scores.layer_order, scores.layer_rounds = greedy_layer_order(model, batches, layer_drops)
    return scores


def residual_outputs(model) -> list[nn.Module]:
    """The modules whose outputs are the residual stream of a post-LN encoder: its LayerNorms, and ELECTRA's
    projection of narrower embeddings into it."""
    project = getattr(base_model(model), "embeddings_project", None)
    return residual_norms(model) + ([project] if project is not None else [])


def residual_norms(model) -> list[nn.LayerNorm]:
    """The LayerNorms whose outputs are the residual stream of a post-LN encoder: every hidden channel of the
    model is one of their channels (an embedding LayerNorm narrower than the stream is projected into it, so it
    is not one of them)."""
    base = base_model(model)
    norms = [] if getattr(base, "embeddings_project", None) is not None else [base.embeddings.LayerNorm]
    for layer in encoder_layers(model):
        attention = layer.attention
        norms.append(attention.LayerNorm if isinstance(attention, PrunedAttention) else attention.output.LayerNorm)
        norms.append(layer.output.LayerNorm)
    return norms


class HiddenChannelGate:
    """Gradient importance of hidden channels: a gate shared by every residual-stream output (CoFi's hidden
    mask) has, per example, dL/dgate_c = sum over those outputs and tokens of y_c * g_c; the score is its
    absolute value summed over examples."""

    def __init__(self, model):
        width = model.config.hidden_size
        self.scores = torch.zeros(width, dtype=torch.float64)
        self.batch: torch.Tensor | None = None
        self.handles = [module.register_forward_hook(self.hook) for module in residual_outputs(model)]

    def hook(self, module, args, output):
        def accumulate(g):
            contribution = (output.detach() * g).sum(dim=1).double().cpu()  # (batch, hidden)
            self.batch = contribution if self.batch is None else self.batch + contribution

        if output.requires_grad:
            output.register_hook(accumulate)

    def end_batch(self) -> None:
        if self.batch is not None:
            self.scores += self.batch.abs().sum(0)
        self.batch = None


def greedy_layer_order(model, batches: list[dict], drops: int) -> tuple[list[int], list[dict]]:
    """Remove ``drops`` layers one at a time, each time the one whose removal raises the loss least."""
    kept = list(range(len(encoder_layers(model))))
    order, rounds = [], []
    for _ in range(min(drops, len(kept) - 1)):
        losses = {layer: mean_loss(model, batches, [i for i in kept if i != layer]) for layer in kept}
        removed = min(losses, key=losses.get)
        rounds.append({"loss_without": {str(k): round(v, 6) for k, v in losses.items()}, "removed": removed})
        order.append(removed)
        kept.remove(removed)
    return order, rounds


@torch.no_grad()
def mean_loss(model, batches: list[dict], keep: list[int] | None = None) -> float:
    """Mean cross-entropy on ``batches``, optionally running only the encoder layers in ``keep``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with only_layers(model, keep):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            total += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            count += len(labels)
    model.train(was_training)
    return total / max(count, 1)


@contextmanager
def only_layers(model, keep: list[int] | None):
    """Temporarily run the encoder with a subset of its layers."""
    if keep is None:
        yield
        return
    family = family_of(model)
    full = family.layers(model)
    family.set_layers(model, nn.ModuleList([full[i] for i in keep]))
    try:
        yield
    finally:
        family.set_layers(model, full)


@torch.no_grad()
def magnitude_importance(model) -> ImportanceScores:
    """Weight-norm scores for heads and neurons, for when no labelled data is available."""
    family, head_dim = family_of(model), head_size(model)
    heads, ffn = [], []
    for layer in encoder_layers(model):
        if family.headless(layer):
            heads.append([])
        else:
            value = family.value_weight(layer).unflatten(0, (-1, head_dim))  # (heads, head_dim, in)
            out = family.attention_out(layer).weight.unflatten(1, (-1, head_dim))  # (hidden, heads, head_dim)
            heads.append((value.norm(dim=(1, 2)) * out.norm(dim=(0, 2))).double().tolist())
        ffn.append((family.ffn_in_weight(layer).norm(dim=1) * family.ffn_out(layer).weight.norm(dim=0))
                   .double().tolist())
    hidden = hidden_magnitude(model) if family.width_surgery else []
    return ImportanceScores(method="magnitude", heads=heads, ffn=ffn, hidden=hidden)


def hidden_magnitude(model) -> list[float]:
    """Without data: a channel's mean LayerNorm scale over the residual stream times the norm of what the
    embeddings write into it (the word embeddings' column, or ELECTRA's projection row)."""
    scale = torch.stack([norm.weight.abs() for norm in residual_norms(model)]).mean(0)
    base = base_model(model)
    project = getattr(base, "embeddings_project", None)
    written = project.weight.norm(dim=1) if project is not None else base.embeddings.word_embeddings.weight.norm(dim=0)
    return (scale * written).double().tolist()
