"""The PyTorch predictor: per-batch padding and length-sorted batches give each text the logits it gets alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from bertc.errors import BertcError
from bertc.inference.pytorch import TorchPredictor, load_torch_predictor
from bertc.torch_artifact import save_artifact
from tests.conftest import tiny_tokenizer

TEXTS = ["good", "the movie was very very boring and the plot was awful", "it is fine", "a sad story",
         "really great acting and a lovely warm story", "bad"]
LABELS = ["neg", "neutral", "pos"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer, vocab_size = tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config), tokenizer


def one_by_one(model, tokenizer, texts, max_length=128) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return np.stack([model(**tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt"))
                         .logits[0].numpy() for text in texts])


def test_batched_logits_equal_each_texts_own_logits_in_text_order(tiny):
    model, tokenizer = tiny
    model.train()  # the predictor switches dropout off itself
    logits = TorchPredictor(model, tokenizer, LABELS, batch_size=2).logits(TEXTS)
    assert logits.shape == (len(TEXTS), 3) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, one_by_one(model, tokenizer, TEXTS), atol=1e-5)
    assert not np.allclose(logits[0], logits[1], atol=1e-4)  # the rows differ, so a mix-up would show


def test_texts_are_truncated_to_max_length(tiny):
    model, tokenizer = tiny
    logits = TorchPredictor(model, tokenizer, LABELS, max_length=4).logits(TEXTS)
    np.testing.assert_allclose(logits, one_by_one(model, tokenizer, TEXTS, max_length=4), atol=1e-5)
    assert not np.allclose(logits[1], TorchPredictor(model, tokenizer, LABELS).logits(TEXTS)[1], atol=1e-4)


def test_sentence_pairs_are_encoded_together(tiny):
    model, tokenizer = tiny
    pairs = ["it was good", "bad"]
    logits = TorchPredictor(model, tokenizer, LABELS).logits(["the movie", "the film"], pairs)
    model.eval()
    with torch.inference_mode():
        alone = model(**tokenizer(["the movie"], ["it was good"], return_tensors="pt")).logits[0].numpy()
    np.testing.assert_allclose(logits[0], alone, atol=1e-5)


def test_load_torch_predictor_rebuilds_the_saved_model_with_the_task(tmp_path, tiny):
    model, tokenizer = tiny
    path = save_artifact(tmp_path / "a", model, tokenizer, stage="finetune", config={},
                         task={"labels": LABELS, "max_length": 16})
    manifest = {"task": {"labels": LABELS, "max_length": 16}}
    predictor = load_torch_predictor(path, manifest, batch_size=3)
    assert (predictor.labels, predictor.max_length, predictor.batch_size, predictor.device) == (LABELS, 16, 3, "cpu")
    np.testing.assert_allclose(predictor.logits(TEXTS), TorchPredictor(model, tokenizer, LABELS, 16).logits(TEXTS),
                               atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(BertcError, match="^--device cuda was given but PyTorch sees no CUDA GPU; use --device cpu$"):
        load_torch_predictor(tmp_path, {"task": {"labels": LABELS}}, device="cuda")
