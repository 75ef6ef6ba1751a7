"""PyTorch dynamic int8 artifacts: float weights plus a recipe, quantized again (identically) when loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from transformers import AutoModelForSequenceClassification, BertConfig

from bertc.artifact import write_manifest
from bertc.errors import BertcError
from bertc.inference.pytorch import TorchPredictor
from bertc.inference.torch_quantized import KIND, load_torch_dynamic_predictor, quantize_linear_dynamic
from tests.conftest import tiny_tokenizer

LABELS = ["neg", "pos"]
TEXTS = ["good", "the movie was very boring", "it is fine", "a really sad and cold story"]
KEEP = ["bert.encoder.layer.1.output.dense", "classifier"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def tiny_model(vocab_size: int):
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


def linear_types(model) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules() if isinstance(module, (nn.Linear,
                                                                                              DynamicLinear))}


def test_every_linear_but_the_float_modules_becomes_dynamic_int8_in_place(tokenizer):
    model = tiny_model(tokenizer[1])
    names = set(linear_types(model))
    assert quantize_linear_dynamic(model, KEEP) is model
    types = linear_types(model)
    assert set(types) == names
    assert {name for name, kind in types.items() if kind is nn.Linear} == set(KEEP)
    assert all(kind is DynamicLinear for name, kind in types.items() if name not in KEEP)


def test_quantizing_is_deterministic_and_close_to_the_float_model(tokenizer):
    vocab_size, tok = tokenizer[1], tokenizer[0]
    reference = TorchPredictor(tiny_model(vocab_size), tok, LABELS).logits(TEXTS)
    first = TorchPredictor(quantize_linear_dynamic(tiny_model(vocab_size), []), tok, LABELS).logits(TEXTS)
    second = TorchPredictor(quantize_linear_dynamic(tiny_model(vocab_size), []), tok, LABELS).logits(TEXTS)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, reference, atol=0.05)


def save(directory, tokenizer, model, quantization: dict):
    directory.mkdir()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return write_manifest(directory, stage="quantize", config={}, parent=None, task={"labels": LABELS, "max_length": 8},
                          model={"kind": KIND, "variant": "int8-torch-dynamic", "quantization": quantization})


def test_the_loader_applies_the_recipe_to_the_saved_float_weights(tmp_path, tokenizer):
    tok, vocab_size = tokenizer
    manifest = save(tmp_path / "a", tok, tiny_model(vocab_size), {"method": "torch-dynamic", "float_modules": KEEP})
    predictor = load_torch_dynamic_predictor(tmp_path / "a", manifest, batch_size=2)
    assert (predictor.labels, predictor.max_length, predictor.batch_size, predictor.device) == (LABELS, 8, 2, "cpu")
    assert {name for name, kind in linear_types(predictor.model).items() if kind is nn.Linear} == set(KEEP)
    # Same batches: dynamic int8 scales activations per batch tensor, so batch mates change the logits slightly.
    expected = TorchPredictor(quantize_linear_dynamic(tiny_model(vocab_size), KEEP), tok, LABELS, 8,
                              batch_size=2).logits(TEXTS)
    np.testing.assert_allclose(predictor.logits(TEXTS), expected, atol=1e-6)


def test_the_loader_refuses_a_gpu_and_an_unknown_recipe(tmp_path, tokenizer):
    tok, vocab_size = tokenizer
    with pytest.raises(BertcError, match="^PyTorch dynamic int8 models run on the CPU only; use --device cpu"):
        load_torch_dynamic_predictor(tmp_path, {}, device="cuda")
    manifest = save(tmp_path / "a", tok, tiny_model(vocab_size), {"method": "torchao-int4"})
    with pytest.raises(BertcError, match=r"is a pytorch-quantized artifact with an unknown recipe 'torchao-int4'; "
                                         r"re-create it with `bertc quantize --method torch-dynamic`"):
        load_torch_dynamic_predictor(tmp_path / "a", manifest)
    manifest["model"].pop("quantization")
    with pytest.raises(BertcError, match="unknown recipe None"):
        load_torch_dynamic_predictor(tmp_path / "a", manifest)
