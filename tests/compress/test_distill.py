import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.compress.distill import distill
from bertc.compress.distillation import (
    LayerTaps,
    attention_map_loss,
    distill_,
    distillation_loss,
    head_averaged_attention,
    hidden_state_loss,
)
from bertc.compress.importance import compute_importance
from bertc.compress.prune import prune_model_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import encoder_layers, layer_shapes, load_pretrained_classifier, make_student
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from tests.conftest import make_tiny_model_dir, quick_train_config

runner = CliRunner()
TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]


def batch(tokenizer, texts=TEXTS):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_head_averaged_attention_matches_eager_attention(tiny_bert_dir):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"], attn_implementation="eager")
    model.eval()
    taps = LayerTaps(model, hidden=True, attention=True)
    inputs = batch(tokenizer)  # padded: the mask matters
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    mask = inputs["attention_mask"].bool()
    for i, reference in enumerate(attentions):
        ours = taps.attention_log_probs(i, mask).exp()
        assert torch.allclose(ours[mask], reference.mean(dim=1)[mask], atol=1e-5)
    taps.remove()


def test_loss_parts_are_zero_for_identical_models_and_work_with_fewer_heads(tiny_bert_dir):
    teacher, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    teacher.eval()
    student = make_student(teacher, [0, 1])
    config = DistillLoss(soft_weight=1.0, hard_weight=0.0, hidden_weight=1.0, attention_weight=1.0)
    taps = LayerTaps(student, True, True), LayerTaps(teacher, True, True)
    inputs = batch(tokenizer)
    labels = torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    _, parts = distillation_loss(s, t, labels, config, attention_mask=inputs["attention_mask"], pairs=[(0, 0), (1, 1)],
                                 student_taps=taps[0], teacher_taps=taps[1])
    assert set(parts) == {"soft", "hidden", "attention"}
    assert all(abs(value.item()) < 1e-5 for value in parts.values())
    # a student with fewer heads and a smaller FFN: the parts are defined, positive and differentiable
    pruned = make_student(teacher, [1])
    prune_model_(pruned, PruneConfig(heads=1, ffn_size=8), compute_importance(pruned))
    pruned.train()
    taps = LayerTaps(pruned, True, True), taps[1]
    s = pruned(**inputs).logits
    with torch.no_grad():
        t = teacher(**inputs).logits
    loss, parts = distillation_loss(s, t, labels, config, attention_mask=inputs["attention_mask"], pairs=[(0, 1)],
                                    student_taps=taps[0], teacher_taps=taps[1])
    assert all(value.item() > 0 for value in parts.values())
    loss.backward()
    assert encoder_layers(pruned)[0].attention.self.query.weight.grad.abs().sum() > 0


def test_hidden_and_attention_losses_ignore_padding():
    mask = torch.tensor([[True, True, False]])
    teacher = torch.randn(1, 3, 4)
    student = teacher.clone()
    student[0, 2] += 100  # a padded position
    assert hidden_state_loss(student, teacher, mask) == 0
    assert hidden_state_loss(torch.zeros_like(teacher), teacher, mask).item() == pytest.approx(1.0)
    query, key = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    maps = head_averaged_attention(query, key, 4, mask)
    assert torch.allclose(maps.exp()[0, :, :2].sum(-1), torch.ones(3), atol=1e-6)
    assert attention_map_loss(maps, maps, mask).abs() < 1e-6


def student_artifact(tmp_path, manifest_task, labels=("0", "1"), **overrides):
    """A differently initialised, smaller student: 1 layer, 2 heads, FFN 32, same tokenizer."""
    source = make_tiny_model_dir(tmp_path / "student-src", seed=7, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, **overrides)
    model, tokenizer = load_pretrained_classifier(str(source), list(labels))
    return save_artifact(tmp_path / "student", model, tokenizer, stage="finetune", config={},
                         task={**manifest_task, "labels": list(labels)})


def pruned_student(teacher: Path, tmp_path) -> Path:
    """The teacher cut to its first layer with 2 of 4 heads and half its FFN: fewer layers, heads and neurons."""
    artifact = load_artifact(teacher)
    prune_model_(artifact.model, PruneConfig(drop_layers=(1,), heads=2, ffn=0.5), compute_importance(artifact.model))
    return save_artifact(tmp_path / "student", artifact.model, artifact.tokenizer, stage="finetune", config={},
                         task=artifact.manifest["task"])


def kl_to_teacher(student, teacher, tokenizer, texts) -> float:
    inputs = batch(tokenizer, texts)
    student.eval()
    teacher.eval()
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    return torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True,
                                      reduction="batchmean").item()


def test_distillation_lowers_kl_to_teacher(tiny_artifact, tmp_path):
    task = read_manifest(tiny_artifact)["task"]
    student = pruned_student(tiny_artifact, tmp_path)
    texts = prepare_data(DataConfig(train=task["train_data"])).eval.texts
    teacher_model, tokenizer = load_model(tiny_artifact), load_artifact(tiny_artifact).tokenizer
    before = kl_to_teacher(load_model(student), teacher_model, tokenizer, texts)
    config = DistillConfig(student=str(student), layer_map=(1,),
                           loss=DistillLoss(soft_weight=1.0, hard_weight=0.0, hidden_weight=0.1, attention_weight=0.1),
                           train=quick_train_config(epochs=2, lr=2e-3, logging_steps=5))
    out = distill(tiny_artifact, config, tmp_path / "distilled")
    after = kl_to_teacher(load_model(out), teacher_model, tokenizer, texts)
    print(f"KL to teacher before {before:.4f} after {after:.4f}")
    assert after < 0.5 * before, (before, after)
    manifest = read_manifest(out)
    assert manifest["stage"] == "distill" and manifest["parent"]["path"] == str(student.absolute())
    assert manifest["compression"]["layer_map"] == [1]
    assert manifest["compression"]["teacher"]["path"] == str(tiny_artifact.absolute())
    assert manifest["model"]["heads_per_layer"] == [2] and manifest["model"]["ffn_per_layer"] == [32]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"distill_soft", "distill_hidden", "distill_attention"} <= set().union(*log)


def test_distill_in_memory_trains_the_student_in_place(tiny_artifact, tmp_path):
    teacher = load_artifact(tiny_artifact)
    labels = teacher.manifest["task"]["labels"]
    data = prepare_data(DataConfig(train=teacher.manifest["task"]["train_data"], max_train_samples=64))
    student = make_student(teacher.model, [1])
    teacher_weight = encoder_layers(teacher.model)[1].output.dense.weight.detach().clone()
    result = distill_(student, teacher.model, teacher.tokenizer, data, {label: i for i, label in enumerate(labels)},
                      quick_train_config(max_steps=2, logging_steps=1), DistillLoss(hidden_weight=1.0),
                      layer_map=[1], work_dir=tmp_path / "work")
    assert result.model is student and result.metrics["steps"] == 2
    assert not torch.equal(encoder_layers(student)[0].output.dense.weight, teacher_weight)
    assert torch.equal(encoder_layers(teacher.model)[1].output.dense.weight.cpu(), teacher_weight)
    log = [json.loads(line) for line in result.log_file.read_text().splitlines()]
    assert {"distill_soft", "distill_hard", "distill_hidden"} <= set().union(*log)


def test_cli_distills_a_student_made_from_the_teacher(tiny_artifact, tmp_path):
    out = tmp_path / "d"
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_artifact), "--out", str(out), "--student-layers",
                                 "1", "--max-steps", "2", "--batch-size", "16", "--max-length", "32", "--device",
                                 "cpu", "--hidden-weight", "1", "--attention-weight", "1"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["model"]["num_layers"] == 1 and manifest["compression"]["layer_map"] == [1]
    assert manifest["compression"]["ratios"]["flops"] < 0.6
    assert manifest["task"]["labels"] == read_manifest(tiny_artifact)["task"]["labels"]
    assert layer_shapes(load_model(out)) == ([4], [64])


@pytest.mark.parametrize("make, args, message", [
    (None, ["--student-layers", "0"], "--student-layers must be at least 1"),
    (None, ["--student-layers", "3"], "more than the teacher's 2 layers"),
    (None, ["--student-layers", "1,0"], "distinct and in increasing order"),
    (None, ["--student-layers", "0,5"], "outside 0 to 1"),
    (None, [], "no student"),
    ("labels", [], "the teacher predicts labels"),
    ("vocab", [], "different tokenizers"),
])
def test_cli_bad_input_exits_2(tiny_artifact, tmp_path, make, args, message):
    task = read_manifest(tiny_artifact)["task"]
    if make == "labels":
        args = ["--student", str(student_artifact(tmp_path, task, labels=("neg", "pos")))]
    elif make == "vocab":
        student = student_artifact(tmp_path, task)
        vocab = student / "vocab.txt"
        if vocab.exists():
            vocab.write_text(vocab.read_text().replace("great", "grand"))
        tokenizer_json = json.loads((student / "tokenizer.json").read_text())
        tokenizer_json["model"]["vocab"]["grand"] = tokenizer_json["model"]["vocab"].pop("great")
        (student / "tokenizer.json").write_text(json.dumps(tokenizer_json))
        args = ["--student", str(student)]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_artifact), "--out", str(out), "--overwrite",
                                 "--max-steps", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert (out / "keep.txt").read_text() == "x"


def test_hidden_loss_needs_equal_hidden_size(tiny_artifact, tmp_path):
    student = student_artifact(tmp_path, read_manifest(tiny_artifact)["task"], hidden_size=16)
    config = DistillConfig(student=str(student), loss=DistillLoss(hidden_weight=1.0), train=quick_train_config())
    with pytest.raises(BertcError, match="hidden size 16 differs"):
        distill(tiny_artifact, config, tmp_path / "o")


def test_config_validation():
    with pytest.raises(BertcError, match="--temperature must be positive"):
        DistillLoss(temperature=0)
    with pytest.raises(BertcError, match="all distillation loss weights are 0"):
        DistillLoss(soft_weight=0, hard_weight=0)
    with pytest.raises(BertcError, match="--student-layers K makes a student"):
        DistillConfig(student="x", student_layers=2)
    assert DistillConfig(student_layers=3, data=DataConfig(train="x")).data.train == "x"


def test_student_copy_leaves_teacher_alone(tiny_bert_dir):
    teacher, _ = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    student = make_student(teacher, [1])
    assert len(encoder_layers(teacher)) == 2 and len(encoder_layers(student)) == 1
    assert student.config.num_hidden_layers == 1 and teacher.config.num_hidden_layers == 2
    assert torch.equal(encoder_layers(student)[0].output.dense.weight, encoder_layers(teacher)[1].output.dense.weight)
