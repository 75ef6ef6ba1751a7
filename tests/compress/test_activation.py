"""bertc prune --activation: the FFN activation swap, in memory, after save and reload, and in the fused ONNX graph."""

from __future__ import annotations

import json
import typing

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    ElectraConfig,
    ElectraForSequenceClassification,
)
from transformers.activations import ACT2FN

from bertc.compress.activation import ACTIVATIONS, swap_activation_
from bertc.compress.config import Activation
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export_
from bertc.modeling import encoder_layers, load_classifier, quiet_transformers

TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]
GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")


def classifier(directory, **kwargs):
    quiet_transformers()
    torch.manual_seed(0)  # the classification head is new: the same weights in every test
    return AutoModelForSequenceClassification.from_pretrained(directory, num_labels=2, attn_implementation="eager",
                                                              **kwargs).eval()


def widen_ffn_inputs_(model) -> None:
    """Scale the FFN input weights so the activations see values across GELU's curve (random init keeps them near
    0, where every GELU approximation agrees with the erf form to rounding)."""
    with torch.no_grad():
        for layer in encoder_layers(model):
            layer.intermediate.dense.weight.mul_(20)


def logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


@pytest.fixture(params=["bert", "roberta"])
def model_dir(request, tiny_bert_dir, tiny_roberta_dir):
    return {"bert": tiny_bert_dir, "roberta": tiny_roberta_dir}[request.param]


def test_activations_are_the_prune_config_choices_and_transformers_names():
    assert set(ACTIVATIONS) == set(typing.get_args(Activation))
    assert all(hidden_act in ACT2FN for hidden_act in ACTIVATIONS.values())


@pytest.mark.parametrize("name, reference", [
    ("gelu_tanh", lambda x: nn.functional.gelu(x, approximate="tanh")),
    ("gelu_fast", lambda x: nn.functional.gelu(x, approximate="tanh")),
    ("relu", nn.functional.relu),
])
def test_each_activation_computes_the_function_it_is_named_for(name, reference):
    x = torch.linspace(-8, 8, 2001)
    swapped = ACT2FN[ACTIVATIONS[name]](x)
    torch.testing.assert_close(swapped, reference(x), atol=1e-6, rtol=1e-6)
    if name != "relu":  # an approximation of erf GELU: close to it, not equal
        difference = (swapped - nn.functional.gelu(x)).abs().max().item()
        assert 1e-5 < difference < 1e-3


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_swap_replaces_every_ffn_activation_and_nothing_else(model_dir, name):
    model = classifier(model_dir)
    others = {path: module for path, module in model.named_modules() if "intermediate.intermediate_act_fn" not in path}
    report = swap_activation_(model, name)
    assert report == {"from": "gelu", "to": ACTIVATIONS[name]}
    assert model.config.hidden_act == ACTIVATIONS[name]
    expected = type(ACT2FN[ACTIVATIONS[name]])
    functions = [layer.intermediate.intermediate_act_fn for layer in encoder_layers(model)]
    assert all(type(function) is expected for function in functions)
    assert len({id(function) for function in functions}) == len(functions)  # one module per layer, as built
    # the pooler (BERT), the classification heads (tanh in both) and everything else are the same modules
    assert {path: module for path, module in model.named_modules()
            if "intermediate.intermediate_act_fn" not in path} == others


def test_relu_changes_the_logits_and_the_tanh_approximation_barely_does(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    original = classifier(tiny_bert_dir)
    widen_ffn_inputs_(original)
    reference = logits(original, tokenizer)
    changes = {}
    for name in ("gelu_tanh", "gelu_fast", "relu"):
        model = classifier(tiny_bert_dir)
        widen_ffn_inputs_(model)
        swap_activation_(model, name)
        changes[name] = (logits(model, tokenizer) - reference).abs().max().item()
    assert 0 < changes["gelu_tanh"] < 1e-3 and 0 < changes["gelu_fast"] < 1e-3
    assert changes["relu"] > 100 * changes["gelu_tanh"]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_swapped_model_saves_and_reloads_identically(model_dir, tmp_path, name):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = classifier(model_dir)
    widen_ffn_inputs_(model)
    swap_activation_(model, name)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["hidden_act"] == ACTIVATIONS[name]
    reloaded = load_classifier(tmp_path, attn_implementation="eager")  # the attention the original runs
    assert reloaded.config.hidden_act == ACTIVATIONS[name]
    assert all(type(layer.intermediate.intermediate_act_fn) is type(ACT2FN[ACTIVATIONS[name]])
               for layer in encoder_layers(reloaded))
    assert torch.equal(logits(reloaded, tokenizer), logits(model, tokenizer))


def test_swapping_to_the_current_activation_reports_it_and_changes_nothing(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = classifier(tiny_bert_dir, hidden_act="gelu_fast")
    before = logits(model, tokenizer)
    assert swap_activation_(model, "gelu_fast") == {"from": "gelu_fast", "to": "gelu_fast"}
    assert model.config.hidden_act == "gelu_fast" and torch.equal(logits(model, tokenizer), before)


def test_unknown_activation_is_a_one_line_error_listing_the_choices(tiny_bert_dir):
    model = classifier(tiny_bert_dir)
    functions = [layer.intermediate.intermediate_act_fn for layer in encoder_layers(model)]
    with pytest.raises(BertcError) as caught:
        swap_activation_(model, "gelu_new")  # a transformers name, not one of bertc's
    message = str(caught.value)
    assert "\n" not in message and "gelu_new" in message
    assert all(name in message for name in ACTIVATIONS)
    assert model.config.hidden_act == "gelu"
    assert [layer.intermediate.intermediate_act_fn for layer in encoder_layers(model)] == functions


def test_electra_classification_head_keeps_its_gelu(tmp_path, tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    config = ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, num_labels=2)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()
    assert isinstance(model, ElectraForSequenceClassification)
    widen_ffn_inputs_(model)
    swap_activation_(model, "relu")
    model.save_pretrained(tmp_path)
    reloaded = load_classifier(tmp_path, attn_implementation="eager")  # the attention the original runs
    x = torch.linspace(-4, 4, 101)
    for electra in (model, reloaded):
        assert all(isinstance(layer.intermediate.intermediate_act_fn, nn.ReLU) for layer in encoder_layers(electra))
        # ELECTRA's head applies erf GELU whatever hidden_act says (a transformers version that read hidden_act
        # there would change the head too, and this would fail)
        torch.testing.assert_close(electra.classifier.activation(x), nn.functional.gelu(x), atol=0, rtol=0)
    assert torch.equal(logits(reloaded, tokenizer), logits(model, tokenizer))


@pytest.mark.parametrize("name, opset, fused", [
    (None, 17, "BiasGelu"),  # the original erf GELU
    ("gelu_tanh", 17, "FastGelu"),
    ("gelu_tanh", 20, "FastGelu"),  # gelu_pytorch_tanh would fuse into (erf) BiasGelu here
    ("gelu_fast", 17, "FastGelu"),
    ("relu", 17, None),
])
def test_fused_onnx_graph_has_the_swapped_activation(tiny_bert_dir, name, opset, fused):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = classifier(tiny_bert_dir)
    if name is not None:
        swap_activation_(model, name)
    exported = export_(model, tokenizer, ExportConfig(opset=opset, verify_samples=5))  # verified against PyTorch
    fusion = exported.description["fusion"]
    layers = len(encoder_layers(model))
    assert {op: fusion[op] for op in GELU_OPS} == {op: layers if op == fused else 0 for op in GELU_OPS}
    relus = sum(node.op_type == "Relu" for node in exported.proto.graph.node)
    assert relus == (layers if name == "relu" else 0)
    assert fusion["Attention"] == layers  # the swap leaves the rest of the fusion alone
