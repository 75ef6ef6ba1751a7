"""PyTorch dynamic int8: which layer group each Linear belongs to, and the recipe the manifest records."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

from bertc.export.torch_dynamic import linear_groups, recipe
from bertc.inference.torch_quantized import quantize_linear_dynamic


def tiny(config_class, layers: int = 2):
    config = config_class(vocab_size=64, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=64, num_labels=3, pad_token_id=0)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


def test_every_bert_linear_is_in_its_layer_or_the_head():
    groups = linear_groups(tiny(BertConfig, layers=3))
    assert len(groups) == 3 * 6 + 2  # q, k, v, attention output, FFN in and out per layer; pooler and classifier
    assert {group for group in groups.values()} == {"layer.0", "layer.1", "layer.2", "classifier"}
    assert [name for name, group in groups.items() if group == "layer.1"] == [
        f"bert.encoder.layer.1.{part}" for part in ("attention.self.query", "attention.self.key",
                                                     "attention.self.value", "attention.output.dense",
                                                     "intermediate.dense", "output.dense")]
    assert groups["bert.pooler.dense"] == groups["classifier"] == "classifier"


def test_a_model_with_ten_layers_is_not_confused_by_name_prefixes():
    groups = linear_groups(tiny(BertConfig, layers=11))
    assert groups["bert.encoder.layer.10.output.dense"] == "layer.10"
    assert groups["bert.encoder.layer.1.output.dense"] == "layer.1"
    assert sum(group == "layer.1" for group in groups.values()) == 6


def test_roberta_uses_its_own_prefix_and_its_two_layer_head():
    groups = linear_groups(tiny(RobertaConfig))
    assert groups["roberta.encoder.layer.0.attention.self.query"] == "layer.0"
    assert groups["classifier.dense"] == groups["classifier.out_proj"] == "classifier"
    assert set(groups.values()) == {"layer.0", "layer.1", "classifier"}


def test_an_embedding_linear_is_grouped_with_the_embeddings():
    model = tiny(BertConfig)
    model.bert.embeddings.projection = nn.Linear(32, 32)  # e.g. ELECTRA's embedding projection
    assert linear_groups(model)["bert.embeddings.projection"] == "embeddings"


def test_the_recipe_is_what_the_loader_applies():
    written = recipe(["classifier"], ["classifier"])
    assert written["method"] == "torch-dynamic"  # load_torch_dynamic_predictor refuses any other
    assert written["float_modules"] == ["classifier"] and written["float_groups"] == ["classifier"]
    assert written["dtype"] == "qint8" and written["modules"] == "torch.nn.Linear"


def test_the_groups_name_the_modules_that_the_quantizer_keeps_in_float():
    model = tiny(BertConfig)
    groups = linear_groups(model)
    keep = sorted(name for name, group in groups.items() if group == "layer.1")
    quantize_linear_dynamic(model, keep)
    modules = dict(model.named_modules())
    assert all(type(modules[name]) is nn.Linear for name in keep)
    assert all(type(modules[name]) is not nn.Linear for name in groups if name not in keep)


@pytest.mark.parametrize("layers", [1, 2])
def test_groups_cover_every_linear(layers):
    model = tiny(BertConfig, layers=layers)
    linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    assert set(linear_groups(model)) == linears
