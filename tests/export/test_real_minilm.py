"""The embedded all-MiniLM-L6-v2 on real SST-2 sentences: full fusion, per-layer heads, verified logits (slow)."""

from __future__ import annotations

import pytest

from bertc.artifact import read_manifest
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.modeling import encoder_layers, keep_heads_, load_pretrained_classifier, record_layer_shapes_
from bertc.torch_artifact import save_artifact

pytestmark = pytest.mark.slow


def minilm_artifact(path, sst2, heads: list[int] | None = None):
    model, tokenizer = load_pretrained_classifier(None, ["0", "1"])
    if heads is not None:
        for layer, count in zip(encoder_layers(model), heads):
            keep_heads_(model, layer, list(range(12 - count, 12)))  # the last heads: not a prefix
        record_layer_shapes_(model)
    task = {"labels": [0, 1], "text_column": "sentence", "text_pair_column": None, "label_column": "label",
            "max_length": 128, "eval_data": str(sst2 / "test.tsv"), "train_data": str(sst2 / "train.tsv")}
    return save_artifact(path, model, tokenizer, stage="finetune", config={}, task=task)


@pytest.mark.parametrize("heads", [None, [12, 8, 6, 4, 2, 0]], ids=["full", "uneven"])
def test_minilm_fuses_every_attention_layer_and_matches_pytorch(tmp_path, sst2, heads):
    src = minilm_artifact(tmp_path / "src", sst2, heads)
    out = export(src, ExportConfig(strict=True, verify_samples=200), tmp_path / "onnx")
    model = read_manifest(out)["model"]
    expected = heads or [12] * 6
    layers_with_heads = [(i, h) for i, h in enumerate(expected) if h]
    assert model["fusion"]["Attention"] == len(layers_with_heads)
    assert model["fusion"]["EmbedLayerNormalization"] == 1 and model["fusion"]["SkipLayerNormalization"] >= 11
    assert [(n["layer"], n["num_heads"]) for n in model["fusion_check"]["nodes"]] == layers_with_heads
    check = read_manifest(out)["metrics"]["verification"]
    assert check["samples"] == 200 and check["max_abs_logit_diff"] < 1e-4 and check["label_agreement"] == 1.0
