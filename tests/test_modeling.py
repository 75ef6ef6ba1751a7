import json
import shutil
from types import SimpleNamespace

import pytest
import torch

import bertc
from bertc.errors import BertcError
from bertc.modeling import (
    PrunedAttention,
    check_max_length,
    embedded_model_path,
    encoder_layers,
    every_other_layer,
    keep_heads_,
    keep_layers_,
    keep_neurons_,
    layer_shapes,
    load_pretrained_classifier,
    make_student,
    max_length_problem,
    record_layer_shapes_,
    resolve_model_source,
    usable_positions,
)
from bertc.torch_artifact import save_artifact


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
    keep_heads_(model, layers[0], [1, 3])
    keep_heads_(model, layers[1], [])
    keep_neurons_(model, layers[1], torch.tensor([5, 1, 7]))
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
    with pytest.raises(BertcError, match="'gpt2' model; bertc works on bert, .*, modernbert encoders"):
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


def test_every_other_layer_ends_with_the_last_layer():
    assert every_other_layer(6, 3) == [1, 3, 5]
    assert every_other_layer(12, 6) == [1, 3, 5, 7, 9, 11]
    assert every_other_layer(12, 4) == [2, 5, 8, 11]
    assert every_other_layer(4, 1) == [3]
    assert every_other_layer(3, 3) == [0, 1, 2]


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_keep_layers_removes_layers_and_updates_the_config(request, tmp_path, fixture):
    model, tokenizer = load_pretrained_classifier(str(request.getfixturevalue(fixture)), ["neg", "pos"])
    second = encoder_layers(model)[1]
    keep_layers_(model, [0, 1])  # all of them: nothing changes
    assert len(encoder_layers(model)) == 2
    keep_layers_(model, [1])
    assert list(encoder_layers(model)) == [second] and model.config.num_hidden_layers == 1
    assert all(module.layer_idx == 0 for module in second.modules() if hasattr(module, "layer_idx"))
    before = logits(model, tokenizer)
    out = save_artifact(tmp_path / "shallow", model, tokenizer, stage="prune", config={}, task={"labels": [0, 1]})
    reloaded = bertc.load_model(out)
    assert layer_shapes(reloaded) == ([4], [64])
    torch.testing.assert_close(logits(reloaded, tokenizer), before)


def test_make_student_copies_and_leaves_the_teacher_alone(tiny_bert_dir):
    teacher, _ = load_pretrained_classifier(str(tiny_bert_dir), ["neg", "pos"])
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student = make_student(teacher, [1])
    assert len(encoder_layers(teacher)) == 2 and teacher.config.num_hidden_layers == 2
    assert len(encoder_layers(student)) == 1 and student.config.num_hidden_layers == 1
    assert torch.equal(encoder_layers(student)[0].output.dense.weight, encoder_layers(teacher)[1].output.dense.weight)
    assert encoder_layers(student)[0].output.dense.weight is not encoder_layers(teacher)[1].output.dense.weight
    assert all(p.requires_grad for p in student.parameters())


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_damaged_pretrained_weights_are_named_in_one_line(tmp_path, tiny_bert_dir, how):
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    with pytest.raises(BertcError) as caught:
        load_pretrained_classifier(str(copy), ["neg", "pos"])
    message = str(caught.value)
    assert message.startswith(f"{weights} is damaged (") and message.endswith("); re-create it")
    assert "\n" not in message


@pytest.mark.parametrize("model_type, pad, positions, usable", [
    ("bert", 0, 512, 512), ("electra", 0, 512, 512),
    ("roberta", 1, 514, 512), ("xlm-roberta", 1, 514, 512), ("camembert", 1, 514, 512), ("roberta", 0, 128, 127),
])
def test_usable_positions_leave_out_the_ones_roberta_reserves(model_type, pad, positions, usable):
    config = SimpleNamespace(model_type=model_type, pad_token_id=pad, max_position_embeddings=positions)
    assert usable_positions(config) == usable


@pytest.mark.parametrize("fixture, limit", [("tiny_bert_dir", 128), ("tiny_roberta_dir", 127)])
def test_max_length_beyond_the_position_embeddings_is_refused(request, fixture, limit):
    model, _ = load_pretrained_classifier(str(request.getfixturevalue(fixture)), ["neg", "pos"])
    check_max_length(model, limit)
    assert max_length_problem(model, limit) is None
    with pytest.raises(BertcError, match=rf"^--max-length {limit + 1} is more than the {limit} tokens the student "
                                         rf"can read \(its position embeddings\); pass --max-length {limit} or less$"):
        check_max_length(model, limit + 1, "the student")
