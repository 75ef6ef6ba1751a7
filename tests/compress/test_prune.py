import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import bertc.compress.prune as prune_module
from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.compress.config import PruneConfig
from bertc.compress.importance import ImportanceScores, compute_importance
from bertc.compress.prune import IMPORTANCE_FILE, prune, prune_, prune_model_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import PrunedAttention, encoder_layers, every_other_layer, layer_shapes, load_pretrained_classifier
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from bertc.training.workdir import work_dir_for
from tests.conftest import REPO, assert_one_line_error, quick_train_config

runner = CliRunner()
TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]


def logits(model, tokenizer, texts=TEXTS):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def fake_scores(heads: list[list[float]], ffn_size: int = 64, layer_order=None) -> ImportanceScores:
    return ImportanceScores(method="gradient", heads=heads, ffn=[list(range(ffn_size)) for _ in heads],
                            layer_order=layer_order)


def test_pruned_shapes_and_identical_outputs_after_reload(classifier, tmp_path):
    model, tokenizer = classifier
    scores = fake_scores([[0.1, 0.9, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]])
    kept = prune_model_(model, PruneConfig(heads_global=3, ffn=0.25), scores)
    # ranked after dividing by each layer's L2 norm: 0.9/1.05, 0.4/0.55 and 0.3/0.55 are the highest
    assert kept["kept_heads"] == [[1], [0, 1]]
    assert layer_shapes(model) == ([1, 2], [16, 16])
    assert kept["kept_neurons"][0] == list(range(48, 64))  # the highest-scoring neurons
    layer = encoder_layers(model)[0]
    assert layer.attention.self.query.weight.shape == (8, 32)
    assert layer.attention.output.dense.weight.shape == (32, 8)
    assert layer.intermediate.dense.weight.shape == (16, 32) and layer.output.dense.weight.shape == (32, 16)
    assert model.config.bertc_heads_per_layer == [1, 2]
    before = logits(model, tokenizer)
    save_artifact(tmp_path / "a", model, tokenizer, stage="prune", config={}, task={"labels": ["0", "1"]})
    reloaded = load_model(tmp_path / "a")
    assert layer_shapes(reloaded) == ([1, 2], [16, 16])
    assert torch.equal(logits(reloaded, tokenizer), before)


def test_layer_losing_all_heads_reloads(classifier, tmp_path):
    model, tokenizer = classifier
    prune_model_(model, PruneConfig(heads_global=2), fake_scores([[0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 1.0, 1.0]]))
    assert layer_shapes(model)[0] == [0, 2]
    assert isinstance(encoder_layers(model)[0].attention, PrunedAttention)
    before = logits(model, tokenizer)
    save_artifact(tmp_path / "a", model, tokenizer, stage="prune", config={}, task={"labels": ["0", "1"]})
    assert torch.equal(logits(load_model(tmp_path / "a"), tokenizer), before)


def test_noop_config_leaves_logits_unchanged(classifier):
    model, tokenizer = classifier
    before = logits(model, tokenizer)
    prune_model_(model, PruneConfig(heads=4, layers=2, ffn=1.0), compute_importance(model))
    assert layer_shapes(model) == ([4, 4], [64, 64])
    assert torch.equal(logits(model, tokenizer), before)


def test_pruning_zeroed_heads_and_neurons_keeps_outputs(classifier):
    model, tokenizer = classifier
    head_dim = 8
    for layer, head in zip(encoder_layers(model), (1, 3)):
        rows = slice(head * head_dim, (head + 1) * head_dim)
        with torch.no_grad():
            layer.attention.self.value.weight[rows] = 0
            layer.attention.self.value.bias[rows] = 0
            layer.attention.output.dense.weight[:, rows] = 0
            layer.output.dense.weight[:, :16] = 0  # 16 dead FFN neurons
    before = logits(model, tokenizer)
    scores = compute_importance(model)  # magnitude: the zeroed units score 0 and go first
    kept = prune_model_(model, PruneConfig(heads=3, ffn_size=48), scores)
    assert kept["kept_heads"] == [[0, 2, 3], [0, 1, 2]]
    assert kept["kept_neurons"] == [list(range(16, 64))] * 2
    assert torch.allclose(logits(model, tokenizer), before, atol=1e-5)


def test_kept_heads_are_the_most_important(tiny_bert_dir, tiny_data):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    data = prepare_data(DataConfig(train=str(tiny_data))).train
    scores = compute_importance(model, tokenizer, data, {0: 0, 1: 1}, samples=64, max_length=32)
    kept = prune_model_(model, PruneConfig(heads=2, ffn_size=10), scores)
    for layer_scores, heads, neurons, ffn_scores in zip(scores.heads, kept["kept_heads"], kept["kept_neurons"],
                                                        scores.ffn):
        assert min(layer_scores[h] for h in heads) >= max(s for h, s in enumerate(layer_scores) if h not in heads)
        assert min(ffn_scores[n] for n in neurons) >= max(s for n, s in enumerate(ffn_scores) if n not in neurons)


def test_layer_strategies(classifier):
    assert every_other_layer(6, 3) == [1, 3, 5]
    assert every_other_layer(12, 6) == [1, 3, 5, 7, 9, 11]
    assert every_other_layer(4, 1) == [3]
    model, tokenizer = classifier
    second = encoder_layers(model)[1]
    kept = prune_model_(model, PruneConfig(layers=1, layer_strategy="importance"),
                        fake_scores([[1.0] * 4] * 2, layer_order=[0]))
    assert kept["kept_layers"] == [1] and encoder_layers(model)[0] is second
    assert model.config.num_hidden_layers == 1


def test_top_and_drop_layers(tiny_bert_dir):
    model, _ = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    assert prune_model_(model, PruneConfig(layers=1, layer_strategy="top"), fake_scores([[1.0] * 4] * 2)) \
        ["kept_layers"] == [0]
    model, _ = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    assert prune_model_(model, PruneConfig(drop_layers=(0,)), fake_scores([[1.0] * 4] * 2))["kept_layers"] == [1]
    model, _ = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    with pytest.raises(BertcError, match="--heads 5 is more than"):
        prune_model_(model, PruneConfig(heads=5), fake_scores([[1.0] * 4] * 2))


@pytest.mark.parametrize("options, message", [
    ({"heads": 0}, "--heads must be at least 1"),
    ({"layers": 0}, "--layers must be at least 1"),
    ({"ffn": 0.0}, "--ffn must be a fraction"),
    ({"ffn": 1.5}, "--ffn must be a fraction"),
    ({"heads_global_ratio": 1.2}, "--heads-global as a share"),
    ({}, "nothing to prune"),
    ({"heads": 2, "distill": True}, "--distill trains"),
])
def test_config_validation(options, message):
    with pytest.raises(BertcError, match=message):
        PruneConfig(**options)


def test_prune_stage_contract_and_iterative_steps(tiny_artifact, tmp_path):
    out = prune(tiny_artifact, PruneConfig(heads=2, ffn=0.5, iterative=2, importance_samples=64), tmp_path / "p")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["bertc.json", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         IMPORTANCE_FILE])
    manifest = read_manifest(out)
    assert manifest["stage"] == "prune" and manifest["parent"]["path"] == str(tiny_artifact.absolute())
    assert manifest["task"] == read_manifest(tiny_artifact)["task"]
    compression = manifest["compression"]
    assert compression["importance"] == "gradient"
    assert compression["before"]["heads_per_layer"] == [4, 4] and compression["after"]["heads_per_layer"] == [2, 2]
    assert compression["after"]["ffn_per_layer"] == [32, 32]
    assert compression["ratios"]["flops"] < 1 and compression["ratios"]["num_parameters"] < 1
    assert manifest["model"]["heads_per_layer"] == [2, 2]
    steps = json.loads((out / IMPORTANCE_FILE).read_text())["steps"]
    assert [[len(layer["heads_kept"]) for layer in step["layers"]] for step in steps] == [[3, 3], [2, 2]]
    assert [[layer["ffn_kept"] for layer in step["layers"]] for step in steps] == [[48, 48], [32, 32]]
    final = [layer["heads_kept"] for layer in steps[1]["layers"]]
    assert final == compression["kept_heads"]
    for layer in steps[1]["layers"]:  # the kept heads are the best-scored ones of the last step
        scores = layer["head_scores"]
        assert min(scores[str(h)] for h in layer["heads_kept"]) >= max(scores[str(h)] for h in layer["heads_pruned"])
    assert "accuracy" in manifest["metrics"]["eval"]
    load_model(out)


def test_prune_with_distilled_recovery(tiny_artifact, tmp_path):
    config = PruneConfig(layers=1, heads_global_ratio=0.5, importance_samples=32, distill=True,
                         recover=quick_train_config(max_steps=3, logging_steps=1))
    out = prune(tiny_artifact, config, tmp_path / "p")
    manifest = read_manifest(out)
    assert manifest["model"]["num_layers"] == 1 and sum(manifest["model"]["heads_per_layer"]) == 2
    assert manifest["metrics"]["steps"][0]["recovery"]["steps"] == 3
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("distill_soft" in record and "distill_hard" in record for record in log)
    removed = json.loads((out / IMPORTANCE_FILE).read_text())["steps"][0]["layer_order"]
    assert len(removed) == 1 and manifest["compression"]["kept_layers"] == [1 - removed[0]]


def test_prune_in_memory_returns_what_the_stage_records(tiny_artifact, tmp_path):
    artifact = load_artifact(tiny_artifact)
    task = artifact.manifest["task"]
    data = prepare_data(DataConfig(train=task["train_data"], max_train_samples=64, max_eval_samples=32))
    config = PruneConfig(heads=2, layers=1, importance_samples=32)
    result = prune_(artifact.model, artifact.tokenizer, config, data, tmp_path / "work", labels=task["labels"],
                    max_length=32)
    assert layer_shapes(result.model) == ([2], [64]) and result.model.config.num_hidden_layers == 1
    assert result.importance == "gradient"
    assert len(result.kept_layers) == 1 and len(result.kept_heads[0]) == 2
    assert result.before["num_layers"] == 2 and result.after["num_layers"] == 1
    assert result.after["flops"] < result.before["flops"]
    assert result.eval["samples"] == 32 and 0 <= result.eval["accuracy"] <= 1
    assert result.eval["data"] == data.eval.source
    steps = result.metrics()["steps"]
    assert [step["step"] for step in steps] == [1] and 0 <= steps[0]["eval_accuracy_after_pruning"] <= 1
    assert (tmp_path / "work" / "step-1" / "pruned" / "step.json").is_file()  # the snapshot --resume reloads
    assert not result.logs  # no recovery: no training log


def test_prune_in_memory_without_data(tiny_bert_dir, tmp_path):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    result = prune_(model, tokenizer, PruneConfig(heads=3), None, tmp_path / "work", labels=["0", "1"])
    assert result.importance == "magnitude" and result.eval is None and layer_shapes(result.model)[0] == [3, 3]
    with pytest.raises(BertcError, match="magnitude scoring cannot rank layers"):
        prune_(model, tokenizer, PruneConfig(layers=1), None, tmp_path / "w2", labels=["0", "1"])
    with pytest.raises(BertcError, match="recovery training needs labelled data"):
        prune_(model, tokenizer, PruneConfig(heads=2, recover=quick_train_config()), None, tmp_path / "w3",
               labels=["0", "1"])


def no_data_artifact(tiny_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "bertc.json").read_text())
    manifest["task"]["train_data"] = str(tmp_path / "gone.tsv")
    (copy / "bertc.json").write_text(json.dumps(manifest))
    return copy


def test_magnitude_without_recorded_data(tiny_artifact, tmp_path):
    source = no_data_artifact(tiny_artifact, tmp_path)
    out = prune(source, PruneConfig(heads=3), tmp_path / "p")
    assert read_manifest(out)["compression"]["importance"] == "magnitude"
    with pytest.raises(BertcError, match="magnitude scoring cannot rank layers"):
        prune(source, PruneConfig(layers=1), tmp_path / "q")


@pytest.mark.parametrize("args, message", [
    (["--heads", "0"], "--heads must be at least 1"),
    (["--heads", "9"], "--heads 9 is more than the model's 4"),
    (["--layers", "0"], "--layers must be at least 1"),
    (["--layers", "3"], "--layers 3 is more than"),
    (["--ffn", "1.5"], "--ffn must be a fraction"),
    (["--heads-global", "0.0"], "share must be in"),
    (["--drop-layers", "a"], "--drop-layers takes"),
    (["--drop-layers", "0,1"], "would remove all"),
    (["--ffn-size", "65"], "--ffn-size 65 is more than"),
    (["--heads", "2", "--distill"], "--distill trains"),
])
def test_cli_bad_input_exits_2_and_keeps_output(tiny_artifact, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), "--overwrite", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert (out / "keep.txt").read_text() == "x"


def test_cli_refuses_existing_output_and_non_bert(tiny_artifact, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), "--heads", "2"])
    assert result.exit_code == 2 and "already exists" in result.output
    odd = tmp_path / "gpt"
    shutil.copytree(tiny_artifact, odd)
    config = json.loads((odd / "config.json").read_text())
    config["model_type"] = "gpt2"
    (odd / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["prune", str(odd), "--out", str(tmp_path / "o2"), "--heads", "2"])
    assert result.exit_code == 2 and "distilbert, deberta-v2, modernbert encoders" in result.output
    assert not (tmp_path / "o2").exists()


def test_cli_prunes(tiny_artifact, tmp_path):
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(tmp_path / "p"), "--heads-global", "5",
                                 "--ffn-size", "40", "--importance", "magnitude"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "p")
    assert sum(manifest["model"]["heads_per_layer"]) == 5 and manifest["model"]["ffn_per_layer"] == [40, 40]
    assert manifest["config"]["heads_global"] == 5 and manifest["compression"]["importance"] == "magnitude"


PRUNE_KILLER = """
import os, signal, sys
import bertc.training.trainer as trainer
calls = {"n": 0}
original = trainer.BertcTrainer.training_step
def training_step(self, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 11:  # step 1 recovers for 6 steps; die in step 2's recovery, after its checkpoint-3
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
trainer.BertcTrainer.training_step = training_step
from bertc.cli import app
app(sys.argv[1:])
"""


def test_prune_resume_after_sigkill_gives_the_uninterrupted_model(tiny_artifact, tmp_path):
    def args(out):
        return ["prune", str(tiny_artifact), "--out", str(out), "--heads", "2", "--ffn", "0.5", "--iterative", "2",
                "--importance-samples", "32", "--distill", "--recover-steps", "6", "--save-steps", "3",
                "--batch-size", "16", "--max-length", "32", "--device", "cpu"]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    run = subprocess.run([sys.executable, "-c", PRUNE_KILLER, *args(killed)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    work = work_dir_for(killed)
    assert not killed.exists() and (work / "step-1" / "recovered").is_dir()
    assert not (work / "step-1" / "pruned").exists()  # superseded by the recovered snapshot
    assert (work / "step-2" / "pruned").is_dir() and not (work / "step-2" / "recovered").exists()

    again = subprocess.run([sys.executable, "-m", "bertc.cli", *args(killed)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr
    changed = subprocess.run([sys.executable, "-m", "bertc.cli", *args(killed), "--heads", "3", "--resume"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert changed.returncode == 2 and "different options" in changed.stderr

    resumed = subprocess.run([sys.executable, "-m", "bertc.cli", *args(killed), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not work.exists()
    steps = read_manifest(killed)["metrics"]["steps"]
    assert steps[0]["recovery"]["resumed_from"] is None
    assert steps[1]["recovery"]["resumed_from"].endswith("checkpoint-3")

    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "bertc.cli", *args(straight)], env=env, check=True, capture_output=True,
                   timeout=300)
    a, b = load_file(killed / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    def decisions(out):  # what each step scored and kept (recovery records hold timings)
        return [{k: v for k, v in step.items() if k != "recovery"}
                for step in json.loads((out / IMPORTANCE_FILE).read_text())["steps"]]

    assert decisions(killed) == decisions(straight)
    log = [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert {record["prune_step"] for record in log} == {1, 2}


def test_recovery_max_length_beyond_the_position_embeddings_is_refused_before_any_work(tiny_artifact, tmp_path):
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(tmp_path / "p"), "--heads", "2",
                                 "--recover-steps", "2", "--max-length", "200", "--device", "cpu"])
    assert_one_line_error(result, "--max-length 200 is more than the 128 tokens the model can read",
                          "pass --max-length 128 or less")
    assert list(tmp_path.iterdir()) == []  # no artifact, no work directory


def failing_importance(monkeypatch, at: int):
    calls = {"n": 0}
    original = prune_module.compute_importance

    def compute_importance(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise BertcError("bad data discovered late")
        return original(*args, **kwargs)

    monkeypatch.setattr(prune_module, "compute_importance", compute_importance)


def test_a_prune_failing_before_any_finished_step_leaves_no_work_dir(tiny_artifact, tmp_path, monkeypatch):
    failing_importance(monkeypatch, 1)
    with pytest.raises(BertcError, match="^bad data discovered late$"):
        prune(tiny_artifact, PruneConfig(heads=2, importance="magnitude"), tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_a_prune_failing_after_a_finished_step_keeps_it_for_resume(tiny_artifact, tmp_path, monkeypatch):
    failing_importance(monkeypatch, 2)
    config = PruneConfig(heads=2, iterative=2, importance="magnitude")
    out, work = tmp_path / "p", work_dir_for(tmp_path / "p")
    with pytest.raises(BertcError) as caught:
        prune(tiny_artifact, config, out)
    assert str(caught.value) == f"bad data discovered late; the checkpoint in {work} lets --resume continue"
    assert not out.exists() and (work / "step-1" / "pruned" / "step.json").is_file()
    monkeypatch.undo()
    prune(tiny_artifact, config, out, resume=True)
    assert read_manifest(out)["model"]["heads_per_layer"] == [2, 2] and not work.exists()


TEXT_LABELS = ["0", "1", "maybe"]  # a model trained on labels that read as text: "maybe" made "0" and "1" text


@pytest.fixture
def text_label_artifact(tiny_bert_dir, tmp_path):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), TEXT_LABELS)
    return save_artifact(tmp_path / "text-labels", model, tokenizer, stage="finetune", config={},
                         task={"labels": TEXT_LABELS, "max_length": 32})


def test_data_with_numeric_labels_prunes_a_model_whose_labels_are_text(text_label_artifact, tiny_data, tmp_path):
    result = runner.invoke(app, ["prune", str(text_label_artifact), "--out", str(tmp_path / "p"), "--heads", "3",
                                 "--importance", "gradient", "--importance-samples", "32", "--data", str(tiny_data),
                                 "--max-train-samples", "64", "--max-eval-samples", "16",
                                 "--recover-steps", "2", "--batch-size", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    manifest = read_manifest(tmp_path / "p")
    assert manifest["compression"]["importance"] == "gradient" and manifest["model"]["heads_per_layer"] == [3, 3]
    assert manifest["metrics"]["eval"]["samples"] == 16 and manifest["metrics"]["steps"][0]["recovery"]["steps"] == 2


def test_in_memory_prune_matches_numeric_data_labels_to_text_model_labels(tiny_bert_dir, tiny_data, tmp_path):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), TEXT_LABELS)
    data = prepare_data(DataConfig(train=str(tiny_data), max_train_samples=64, max_eval_samples=16))
    assert set(data.train.labels) == {0, 1}  # read as numbers, unlike the model's labels
    result = prune_(model, tokenizer, PruneConfig(heads=3, importance_samples=32), data, tmp_path / "work",
                    labels=TEXT_LABELS, max_length=32)
    assert result.importance == "gradient" and result.eval["samples"] == 16
    with pytest.raises(BertcError, match=r"has labels the model does not know \(0, 1\); the model predicts a, b"):
        prune_(model, tokenizer, PruneConfig(heads=2, importance_samples=32), data, tmp_path / "w2",
               labels=["a", "b"], max_length=32)
