import json

import pytest
import torch

import bertc
from bertc.artifact import save_artifact
from bertc.errors import BertcError
from bertc.modeling import (
    PrunedAttention,
    embedded_model_path,
    encoder_layers,
    keep_heads_,
    keep_neurons_,
    layer_shapes,
    load_pretrained_classifier,
    record_layer_shapes_,
    resolve_model_source,
)


def logits(model, tokenizer, texts=("the movie was good", "a dull plot")):
    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_embedded_model_is_the_default_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_source(None) == str(embedded_model_path())
    config = json.loads((embedded_model_path() / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (6, 384, 12)


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_per_layer_shapes_survive_save_and_load(request, tmp_path, fixture):
    model, tokenizer = load_pretrained_classifier(str(request.getfixturevalue(fixture)), ["neg", "pos"])
    layers = encoder_layers(model)
    keep_heads_(layers[0], [1, 3], head_dim=8)
    keep_heads_(layers[1], [], head_dim=8)
    keep_neurons_(layers[1], torch.tensor([5, 1, 7]))
    record_layer_shapes_(model)
    assert layer_shapes(model) == ([2, 0], [64, 3])
    assert isinstance(layers[1].attention, PrunedAttention)
    before = logits(model, tokenizer)
    out = save_artifact(tmp_path / "pruned", model, tokenizer, stage="prune", config={}, task={"labels": [0, 1]})
    saved = json.loads((out / "config.json").read_text())
    assert saved["bertc_heads_per_layer"] == [2, 0] and saved["bertc_ffn_per_layer"] == [64, 3]
    reloaded = bertc.load_model(out)
    assert layer_shapes(reloaded) == ([2, 0], [64, 3])
    torch.testing.assert_close(logits(reloaded, tokenizer), before)


def test_unpruned_artifact_loads_in_plain_transformers(tiny_artifact):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    plain = AutoModelForSequenceClassification.from_pretrained(tiny_artifact)
    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    torch.testing.assert_close(logits(plain, tokenizer), logits(bertc.load_model(tiny_artifact), tokenizer))


def test_non_bert_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(BertcError, match="'gpt2' model; bertc works on BERT-layout encoders"):
        load_pretrained_classifier(str(tmp_path), ["a", "b"])


def test_pickle_only_weights_are_refused(tmp_path, tiny_artifact):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "bertc.json"):
        (tmp_path / name).write_bytes((tiny_artifact / name).read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(BertcError, match="safetensors only"):
        bertc.load_model(tmp_path)


def test_missing_model_path():
    with pytest.raises(BertcError, match="does not exist"):
        resolve_model_source("./no/such/model")
