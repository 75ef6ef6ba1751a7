"""Bring your own fine-tuned model: `bertc import`, and every stage taking a transformers classifier directly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.imports.classifier import import_classifier
from bertc.imports.config import ImportConfig
from bertc.modeling import embedded_model_path
from bertc.optimize import runtimes
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.optimize import optimize
from bertc.torch_artifact import load_model
from tests.conftest import assert_one_line_error
from tests.families.tiny import make_family_dir

runner = CliRunner()
TEXTS = ["a good film", "the plot was dull and awful"]


@pytest.fixture(scope="module")
def bert_classifier(tmp_path_factory):
    return make_family_dir(tmp_path_factory.mktemp("plain") / "bert-sst2", "bert", labels=("0", "1"))


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory):
    return make_family_dir(tmp_path_factory.mktemp("base") / "bert-base", "bert", classifier=False)


def logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


def test_import_keeps_the_logits_and_the_labels(family, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = make_family_dir(tmp_path / "src", family, labels=("negative", "neutral", "positive"))
    out = import_classifier(src, ImportConfig(), tmp_path / "imported")
    manifest = read_manifest(out)
    assert manifest["stage"] == "import" and manifest["source_model"] == str(src)
    assert manifest["task"]["labels"] == ["negative", "neutral", "positive"]
    assert manifest["task"]["max_length"] == 128 and manifest["task"]["train_data"] is None
    assert manifest["parent"]["stage"] == "source" and manifest["model"]["model_type"] == json.loads(
        (src / "config.json").read_text())["model_type"]
    source = AutoModelForSequenceClassification.from_pretrained(src).eval()
    tokenizer = AutoTokenizer.from_pretrained(src)
    tokenizer.model_input_names = [n for n in tokenizer.model_input_names
                                   if n != "token_type_ids" or family in ("bert", "deberta-v2", "deberta-v2-unshared")]
    torch.testing.assert_close(logits(load_model(out), tokenizer), logits(source, tokenizer))


def test_import_cli_with_max_length(bert_classifier, tmp_path):
    result = runner.invoke(app, ["import", str(bert_classifier), "--out", str(tmp_path / "a"), "--max-length", "64"])
    assert result.exit_code == 0, result.output
    assert "imported" in result.output and read_manifest(tmp_path / "a")["task"]["max_length"] == 64
    again = runner.invoke(app, ["import", str(bert_classifier), "--out", str(tmp_path / "a")])
    assert_one_line_error(again, "already exists")
    too_long = runner.invoke(app, ["import", str(bert_classifier), "--out", str(tmp_path / "b"), "--max-length", "999"])
    assert_one_line_error(too_long, "--max-length 999")
    assert not (tmp_path / "b").exists()


def test_prune_takes_a_plain_classifier_directory(bert_classifier, tmp_path):
    result = runner.invoke(app, ["prune", str(bert_classifier), "--heads", "2", "--importance", "magnitude",
                                 "--out", str(tmp_path / "pruned")])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "pruned")
    assert manifest["model"]["heads_per_layer"] == [2, 2, 2] and manifest["task"]["labels"] == ["0", "1"]
    assert manifest["parent"] == {"path": str(bert_classifier.absolute()), "stage": "source"}


@pytest.mark.parametrize("command", [
    ["import", "{src}", "--out", "{out}"],
    ["prune", "{src}", "--heads", "2", "--out", "{out}"],
    ["export", "{src}", "--out", "{out}", "--verify-samples", "4"],
    ["distill", "--teacher", "{src}", "--student-layers", "1", "--out", "{out}", "--train", "{data}"],
])
def test_a_base_model_is_refused_by_every_stage_naming_the_head(command, bert_base, tiny_data, tmp_path):
    args = [a.format(src=bert_base, out=tmp_path / "out", data=tiny_data) for a in command]
    line = assert_one_line_error(runner.invoke(app, args), "no classification head", "bertc finetune --model")
    assert "damaged" not in line and not (tmp_path / "out").exists()


def test_the_embedded_minilm_has_no_classification_head(tmp_path):
    result = runner.invoke(app, ["import", str(embedded_model_path()), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, "no classification head")


def test_an_unknown_family_is_refused_before_the_data_is_read(bert_classifier, tmp_path, monkeypatch):
    src = tmp_path / "gpt"
    shutil.copytree(bert_classifier, src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    garbage = tmp_path / "garbage.tsv"  # data that would be refused as unreadable if it were read first
    garbage.write_bytes(b"\x00\xff\xfe garbage\n\x01\x02")
    for args in (["import", str(src), "--out", str(tmp_path / "o")],
                 ["prune", str(src), "--heads", "2", "--data", str(garbage), "--out", str(tmp_path / "o")],
                 ["export", str(src), "--data", str(garbage), "--out", str(tmp_path / "o")],
                 ["optimize", "--train", str(garbage), "--eval", str(garbage), "--from", str(src),
                  "--out", str(tmp_path / "o")]):
        assert_one_line_error(runner.invoke(app, args), "'gpt2' model", "bert, roberta", "distilbert", "modernbert")
    assert not (tmp_path / "o").exists()


def test_a_hub_id_while_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for args in (["import", "someone/bert-sst2-never-cached", "--out", str(tmp_path / "o")],
                 ["prune", "someone/bert-sst2-never-cached", "--heads", "2", "--out", str(tmp_path / "o")]):
        assert_one_line_error(runner.invoke(app, args), "someone/bert-sst2-never-cached", "local directory")
    assert not (tmp_path / "o").exists()


def test_optimize_from_a_plain_classifier_gives_the_same_table(tmp_path, tiny_artifact, tiny_data, monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    plain = make_family_dir(tmp_path / "bert-sst2", "bert", labels=("0", "1"))
    options = dict(train=str(tiny_data), preset="quick", candidates=("base:int8-dynamic",), lr=2e-3, batch_size=16,
                   max_length=32, bench_runs=3, max_accuracy_drop=50.0, exhaustive=True, selection_samples=16,
                   test_samples=16)
    summaries = {name: optimize(OptimizeConfig(start_from=str(src), **options), tmp_path / name)
                 for name, src in (("artifact", tiny_artifact), ("plain", plain))}
    columns = {name: [sorted(row) for row in summary["rows"]] for name, summary in summaries.items()}
    assert columns["plain"] == columns["artifact"] and len(columns["plain"]) == 2
    state = json.loads((tmp_path / "plain" / "optimize.json").read_text())
    assert state["nodes"]["import"]["status"] == "built" and state["finished"]
    assert read_manifest(tmp_path / "plain" / "stages" / "import")["source_model"] == str(plain)
    assert 'baseline = "import"' in (tmp_path / "plain" / "recipe.toml").read_text()


def plain_minilm_fine_tune(directory):
    """The embedded MiniLM fine-tuned a few steps with transformers alone (no bertc), saved to ``directory``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(
        embedded_model_path(), num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = tokenizer(["a wonderful film", "a dreadful film"] * 4, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0] * 4)
    model.train()
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


def test_a_plain_transformers_fine_tune_of_the_real_minilm_imports(tmp_path):
    model, tokenizer = plain_minilm_fine_tune(tmp_path / "minilm-sst2")
    out = import_classifier(tmp_path / "minilm-sst2", ImportConfig(), tmp_path / "imported")
    manifest = read_manifest(out)
    assert manifest["task"]["labels"] == ["0", "1"] and manifest["model"]["num_layers"] == 6
    torch.testing.assert_close(logits(load_model(out), tokenizer), logits(model, tokenizer))


@pytest.mark.slow
def test_optimize_from_a_plain_minilm_fine_tune_gives_the_same_table(tmp_path, tiny_artifact, tiny_data,
                                                                    monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    plain_minilm_fine_tune(tmp_path / "minilm-sst2")
    options = dict(train=str(tiny_data), preset="quick", candidates=("base:int8-dynamic",), batch_size=16,
                   max_length=32, bench_runs=3, max_accuracy_drop=50.0, exhaustive=True, selection_samples=16,
                   test_samples=16)
    summaries = {name: optimize(OptimizeConfig(start_from=str(src), **options), tmp_path / name)
                 for name, src in (("artifact", tiny_artifact), ("plain", tmp_path / "minilm-sst2"))}
    columns = {name: [sorted(row) for row in summary["rows"]] for name, summary in summaries.items()}
    assert columns["plain"] == columns["artifact"] and len(columns["plain"]) == 2


def test_evaluate_and_predict_take_a_plain_classifier_directory(bert_classifier, tiny_data, tmp_path):
    report_file, predictions = tmp_path / "report.json", tmp_path / "predictions.json"
    result = runner.invoke(app, ["evaluate", str(bert_classifier), "--data", str(tiny_data), "--json",
                                 str(report_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["samples"] == 60 and report["labels"] == ["0", "1"]
    result = runner.invoke(app, ["predict", str(bert_classifier), *TEXTS, "--json", str(predictions)])
    assert result.exit_code == 0, result.output
    rows = json.loads(predictions.read_text())
    model = load_model(bert_classifier)
    from transformers import AutoTokenizer

    expected = logits(model.eval(), AutoTokenizer.from_pretrained(bert_classifier)).argmax(-1).tolist()
    assert [str(r["label"]) for r in rows] == [str(i) for i in expected]
    assert not (bert_classifier / "bertc.json").exists()


def test_quantize_and_bench_take_a_plain_classifier_directory(bert_classifier, tiny_data, tmp_path):
    out = tmp_path / "int8"
    result = runner.invoke(app, ["quantize", str(bert_classifier), "--out", str(out), "--method", "torch-dynamic",
                                 "--eval", str(tiny_data), "--eval-samples", "8"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["model"]["kind"] == "pytorch-quantized"
    assert manifest["parent"] == {"path": str(bert_classifier.absolute()), "stage": "source"}
    result = runner.invoke(app, ["bench", str(bert_classifier), str(out), "--data", str(tiny_data), "--batch-sizes",
                                 "1", "--runs", "4", "--rounds", "2", "--warmup", "1", "--no-memory", "--out",
                                 str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    assert not (bert_classifier / "bertc.json").exists()


def test_evaluate_refuses_a_directory_that_is_neither_before_reading_data(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "empty"), "--data", str(tmp_path / "missing.tsv")])
    assert_one_line_error(result, "not a bertc artifact or a transformers model directory")
