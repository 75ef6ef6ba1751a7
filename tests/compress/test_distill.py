import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import bertc.compress.distillation as distillation_module
from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.compress.distill import distill
from bertc.compress.importance import compute_importance
from bertc.compress.prune import prune_model_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import encoder_layers, layer_shapes, load_pretrained_classifier, make_student
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from tests.conftest import assert_one_line_error, make_tiny_model_dir, quick_train_config

runner = CliRunner()
TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]


def batch(tokenizer, texts=TEXTS):
    return tokenizer(texts, padding=True, return_tensors="pt")


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
])
def test_cli_bad_input_exits_2(tiny_artifact, tmp_path, make, args, message):
    task = read_manifest(tiny_artifact)["task"]
    if make == "labels":
        args = ["--student", str(student_artifact(tmp_path, task, labels=("neg", "pos")))]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_artifact), "--out", str(out), "--overwrite",
                                 "--max-steps", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert (out / "keep.txt").read_text() == "x"


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


def test_max_length_beyond_the_position_embeddings_is_refused_before_any_work(tiny_artifact, tmp_path):
    result = runner.invoke(app, ["distill", "--teacher", str(tiny_artifact), "--out", str(tmp_path / "d"),
                                 "--student-layers", "1", "--max-steps", "2", "--max-length", "129", "--device", "cpu"])
    assert_one_line_error(result, "--max-length 129 is more than the 128 tokens the student can read",
                          "pass --max-length 128 or less")
    assert list(tmp_path.iterdir()) == []  # no artifact, no work directory


def test_a_distillation_failing_before_its_first_checkpoint_leaves_no_work_dir(tiny_artifact, tmp_path, monkeypatch):
    def compute_loss(*args, **kwargs):
        raise BertcError("bad data discovered late")

    monkeypatch.setattr(distillation_module.DistillTrainer, "compute_loss", compute_loss)
    config = DistillConfig(student_layers=1, train=quick_train_config(max_steps=2))
    with pytest.raises(BertcError, match="^bad data discovered late$"):
        distill(tiny_artifact, config, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []
