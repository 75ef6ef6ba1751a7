import pytest
import torch

from bertc.compress.importance import (
    compute_importance,
    gradient_importance,
    importance_batches,
    magnitude_importance,
    mean_loss,
)
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.modeling import encoder_layers, load_pretrained_classifier


@pytest.fixture
def classifier(tiny_bert_dir):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    return model, tokenizer


@pytest.fixture(scope="module")
def dataset(tiny_data):
    return prepare_data(DataConfig(train=str(tiny_data))).train


def zero_head_(layer, head: int, head_dim: int = 8) -> None:
    """Make a head contribute nothing: its value rows and its output-projection columns are zero."""
    rows = slice(head * head_dim, (head + 1) * head_dim)
    with torch.no_grad():
        layer.attention.self.value.weight[rows] = 0
        layer.attention.self.value.bias[rows] = 0
        layer.attention.output.dense.weight[:, rows] = 0


def zero_neuron_(layer, neuron: int) -> None:
    with torch.no_grad():
        layer.output.dense.weight[:, neuron] = 0


def test_gradient_importance_scores_dead_units_zero(classifier, dataset):
    model, tokenizer = classifier
    layers = encoder_layers(model)
    zero_head_(layers[0], 2)
    zero_neuron_(layers[1], 5)
    scores = compute_importance(model, tokenizer, dataset, {0: 0, 1: 1}, samples=64, max_length=32)
    assert scores.method == "gradient" and scores.samples == 64
    assert [len(h) for h in scores.heads] == [4, 4] and [len(f) for f in scores.ffn] == [64, 64]
    assert scores.heads[0][2] == 0.0 and min(scores.heads[0][i] for i in (0, 1, 3)) > 0
    assert scores.ffn[1][5] == 0.0 and sum(s > 0 for s in scores.ffn[1]) > 50
    assert all(p.grad is None for p in model.parameters())  # scoring leaves no gradients behind


def test_gradient_importance_matches_explicit_head_gate(classifier, dataset):
    """The hook-based score equals |dL/dgate| of an explicit multiplicative gate on the head, per example."""
    model, tokenizer = classifier
    batches = importance_batches(tokenizer, dataset, {0: 0, 1: 1}, 32, samples=1, batch_size=1, seed=0)
    scores = gradient_importance(model, batches)
    gate = torch.ones(4, requires_grad=True)
    dense = encoder_layers(model)[1].attention.output.dense
    handle = dense.register_forward_pre_hook(lambda m, args: (args[0] * gate.repeat_interleave(8),))
    batch = dict(batches[0])
    labels = batch.pop("labels")
    model.eval()
    torch.nn.functional.cross_entropy(model(**batch).logits, labels, reduction="sum").backward()
    handle.remove()
    assert torch.allclose(gate.grad.abs().double(), torch.tensor(scores.heads[1], dtype=torch.float64), rtol=1e-4)


def test_greedy_layer_order_records_losses(classifier, dataset):
    model, tokenizer = classifier
    batches = importance_batches(tokenizer, dataset, {0: 0, 1: 1}, 32, samples=32, batch_size=16, seed=0)
    scores = gradient_importance(model, batches, layer_drops=1)
    assert len(scores.layer_order) == 1
    first = scores.layer_rounds[0]
    kept = {layer: mean_loss(model, batches, [i for i in range(2) if i != layer]) for layer in range(2)}
    assert first["removed"] == min(kept, key=kept.get) == scores.layer_order[0]
    assert first["loss_without"]["0"] == pytest.approx(kept[0], rel=1e-5)
    assert scores.base_loss == pytest.approx(mean_loss(model, batches), rel=1e-5)


def test_magnitude_importance_without_data(classifier):
    model, _ = classifier
    zero_head_(encoder_layers(model)[1], 0)
    zero_neuron_(encoder_layers(model)[0], 7)
    scores = compute_importance(model)
    assert scores.method == "magnitude" and scores.layer_order is None
    assert scores.heads[1][0] == 0.0 and min(scores.heads[1][1:]) > 0
    assert scores.ffn[0][7] == 0.0
    assert scores.to_json()["heads"][1][0] == 0.0
    assert magnitude_importance(model).heads == scores.heads
