import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import bertc.training.trainer as trainer_module
from bertc.cli import app
from bertc.data.config import AugmentConfig, DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.finetune.config import FinetuneConfig
from bertc.finetune.finetune import finetune, finetune_
from bertc.modeling import load_pretrained_classifier
from bertc.training.workdir import CONFIG_FILE, work_dir_for
from tests.conftest import REPO, quick_train_config

ARTIFACT_FILES = {"bertc.json", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "train_log.jsonl"}


def run_finetune(tiny_bert_dir, tiny_data, out, **train_options):
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), train=quick_train_config(**train_options))
    return finetune(tiny_bert_dir, config, out)


def test_artifact_contract(tiny_artifact):
    assert ARTIFACT_FILES <= {p.name for p in tiny_artifact.iterdir()}
    manifest = json.loads((tiny_artifact / "bertc.json").read_text())
    assert manifest["stage"] == "finetune"
    assert manifest["task"]["labels"] == [0, 1] and manifest["task"]["text_column"] == "sentence"
    assert manifest["task"]["data"]["train_cleaning"]["rows_in"] == 240
    assert set(manifest["metrics"]["eval"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert manifest["metrics"]["training"]["steps"] == 90
    assert manifest["metrics"]["eval"]["accuracy"] >= 0.8
    assert manifest["model"]["heads_per_layer"] == [4, 4]
    log = [json.loads(line) for line in (tiny_artifact / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in r and "learning_rate" in r for r in log) and any("eval_accuracy" in r for r in log)
    assert not work_dir_for(tiny_artifact).exists()


def test_training_learns_the_task(tmp_path, tiny_bert_dir, tiny_data):
    out = run_finetune(tiny_bert_dir, tiny_data, tmp_path / "m", epochs=6, lr=2e-3)
    assert json.loads((out / "bertc.json").read_text())["metrics"]["eval"]["accuracy"] >= 0.8


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_bert_dir, tiny_data):
    a = load_file(run_finetune(tiny_bert_dir, tiny_data, tmp_path / "a", max_steps=6) / "model.safetensors")
    b = load_file(run_finetune(tiny_bert_dir, tiny_data, tmp_path / "b", max_steps=6) / "model.safetensors")
    c = load_file(run_finetune(tiny_bert_dir, tiny_data, tmp_path / "c", max_steps=6, seed=1) / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_early_stopping_and_best_checkpoint(tmp_path, tiny_bert_dir, tiny_data):
    out = run_finetune(tiny_bert_dir, tiny_data, tmp_path / "m", epochs=5, lr=1e-9, eval_steps=2,
                       early_stopping_patience=2)
    training = json.loads((out / "bertc.json").read_text())["metrics"]["training"]
    assert training["steps"] == 6  # evals at 2 (best), 4, 6 (two without progress) -> stop
    assert training["best_step"] == 2


KILLER = """
import os, signal, sys
import bertc.training.trainer as trainer
calls = {"n": 0}
original = trainer.BertcTrainer.training_step
def training_step(self, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 8:  # checkpoints are written every 3 steps: die mid-epoch after checkpoint-6
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
trainer.BertcTrainer.training_step = training_step
from bertc.cli import app
app(sys.argv[1:])
"""


def cli_args(tiny_bert_dir, tiny_data, out):
    return ["finetune", "--model", str(tiny_bert_dir), "--train", str(tiny_data), "--out", str(out), "--epochs", "2",
            "--batch-size", "16", "--lr", "5e-4", "--max-length", "32", "--save-steps", "3", "--device", "cpu"]


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path, tiny_bert_dir, tiny_data):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed_out = tmp_path / "killed"
    run = subprocess.run([sys.executable, "-c", KILLER, *cli_args(tiny_bert_dir, tiny_data, killed_out)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    assert not killed_out.exists() and (work_dir_for(killed_out) / "checkpoints" / "checkpoint-6").is_dir()

    again = subprocess.run([sys.executable, "-m", "bertc.cli", *cli_args(tiny_bert_dir, tiny_data, killed_out)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = subprocess.run([sys.executable, "-m", "bertc.cli", *cli_args(tiny_bert_dir, tiny_data, killed_out),
                              "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest = json.loads((killed_out / "bertc.json").read_text())
    assert manifest["metrics"]["training"]["resumed_from"].endswith("checkpoint-6")

    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "bertc.cli", *cli_args(tiny_bert_dir, tiny_data, straight)], env=env,
                   check=True, capture_output=True, timeout=300)
    a, b = load_file(killed_out / "model.safetensors"), load_file(straight / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    steps = [json.loads(line)["step"] for line in (killed_out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_data_parallel_ranks_train_identical_weights(tmp_path, tiny_bert_dir, tiny_data):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    run = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "bertc.cli",
                          *cli_args(tiny_bert_dir, tiny_data, out)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    distributed = json.loads((out / "bertc.json").read_text())["distributed"]
    assert distributed["world_size"] == 2 and distributed["backend"] == "gloo"
    assert len(set(distributed["parameter_sha256"])) == 1
    # 240 training rows shared by 2 ranks x batch 16 -> 8 steps per epoch (one process alone needs 15).
    assert json.loads((out / "bertc.json").read_text())["metrics"]["training"]["steps"] == 16


def test_bf16_on_cpu_trains(tmp_path, tiny_bert_dir, tiny_data):
    out = run_finetune(tiny_bert_dir, tiny_data, tmp_path / "m", max_steps=3, precision="bf16")
    manifest = json.loads((out / "bertc.json").read_text())
    assert manifest["config"]["train"]["precision"] == "bf16" and manifest["metrics"]["training"]["steps"] == 3
    assert load_file(out / "model.safetensors")["classifier.weight"].dtype == torch.float32


@pytest.mark.parametrize("options", [dict(optimizer="sgd", schedule="cosine", layer_lr_decay=0.8),
                                     dict(optimizer="adafactor", schedule="exponential", grad_accum=2)])
def test_other_strategies_run_end_to_end(tmp_path, tiny_bert_dir, tiny_data, options):
    out = run_finetune(tiny_bert_dir, tiny_data, tmp_path / "m", max_steps=4, **options)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert json.loads((out / "bertc.json").read_text())["metrics"]["training"]["steps"] == 4
    assert all(r["learning_rate"] > 0 for r in log if "learning_rate" in r)


def test_augmented_training_records_what_it_added(tmp_path, tiny_bert_dir, tiny_data):
    config = FinetuneConfig(
        data=DataConfig(train=str(tiny_data), augment=AugmentConfig(strategies=("delete", "swap"), factor=1.0)),
        train=quick_train_config(max_steps=2))
    report = json.loads((finetune(tiny_bert_dir, config, tmp_path / "m") / "bertc.json").read_text())["task"]["data"]
    assert report["augmented_examples"] > 150 and report["train_examples"] == 240 + report["augmented_examples"]


def test_gradient_accumulation_averages_instead_of_summing(tmp_path, tiny_bert_dir, tiny_data):
    def first_loss(out, **options):
        run_finetune(tiny_bert_dir, tiny_data, out, max_steps=1, logging_steps=1, **options)
        return next(json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
                    if "loss" in json.loads(line))

    single = first_loss(tmp_path / "a", batch_size=16)
    accumulated = first_loss(tmp_path / "b", batch_size=8, grad_accum=2)
    assert 0.8 < accumulated / single < 1.25  # a summed loss would be about twice as large


def test_finetune_in_memory_trains_the_model_in_place(tmp_path, tiny_bert_dir, tiny_data):
    data = prepare_data(DataConfig(train=str(tiny_data)))
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), [str(label) for label in data.labels])
    head = model.classifier.weight.detach().clone()
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)),
                            train=quick_train_config(max_steps=4, logging_steps=1))
    result = finetune_(model, tokenizer, data, config, tmp_path / "work")
    assert result.model is model and result.metrics["steps"] == 4 and result.metrics["device"] == "cpu"
    assert not torch.equal(model.classifier.weight, head)
    assert json.loads((tmp_path / "work" / CONFIG_FILE).read_text())["train_examples"] == len(data.train)
    assert any("loss" in json.loads(line) for line in result.log_file.read_text().splitlines())
    assert [p.name for p in tmp_path.iterdir()] == ["work"]  # no artifact: that is the directory stage's job
    three, _ = load_pretrained_classifier(str(tiny_bert_dir), ["a", "b", "c"])
    with pytest.raises(BertcError, match="the model has 3 outputs but the data has 2 labels"):
        finetune_(three, tokenizer, data, config, tmp_path / "other")


def test_manifest_records_where_the_model_came_from(tiny_artifact, tiny_bert_dir, tmp_path):
    manifest = json.loads((tiny_artifact / "bertc.json").read_text())
    assert manifest["source_model"] == str(tiny_bert_dir)
    assert manifest["parent"] == {"path": str(tiny_bert_dir.absolute()), "stage": "source"}
    assert "model" not in manifest["config"] and manifest["config"]["data"]["train"] is not None
    # an artifact trained further is the parent; its lineage continues
    config = FinetuneConfig(data=DataConfig(train=manifest["task"]["train_data"]),
                            train=quick_train_config(max_steps=1))
    again = json.loads((finetune(tiny_artifact, config, tmp_path / "again") / "bertc.json").read_text())
    assert again["parent"]["path"] == str(tiny_artifact.absolute()) and again["parent"]["stage"] == "finetune"
    assert [entry["stage"] for entry in again["lineage"]] == ["source", "finetune"]


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertc: error: ") and "Traceback" not in result.output, lines
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


def test_max_length_beyond_the_position_embeddings_is_refused_before_any_work(tmp_path, tiny_bert_dir, tiny_data,
                                                                             monkeypatch):
    def no_tokenizing(*args, **kwargs):
        raise AssertionError("data was tokenized")

    monkeypatch.setattr(trainer_module, "to_hf_dataset", no_tokenizing)
    with pytest.raises(BertcError, match=r"^--max-length 200 is more than the 128 tokens the model can read \(its "
                                         r"position embeddings\); pass --max-length 128 or less$"):
        run_finetune(tiny_bert_dir, tiny_data, tmp_path / "m", max_length=200)
    result = CliRunner().invoke(app, [*cli_args(tiny_bert_dir, tiny_data, tmp_path / "m"), "--max-length", "129"])
    assert_one_line_error(result, "--max-length 129", "128 tokens", "pass --max-length 128 or less")
    assert list(tmp_path.iterdir()) == []  # no artifact, no work directory


def test_max_length_leaves_out_the_positions_roberta_reserves(tmp_path, tiny_roberta_dir, tiny_data):
    with pytest.raises(BertcError, match="--max-length 128 is more than the 127 tokens the model can read"):
        run_finetune(tiny_roberta_dir, tiny_data, tmp_path / "m", max_length=128)
    data = prepare_data(DataConfig(train=str(tiny_data)))
    model, tokenizer = load_pretrained_classifier(str(tiny_roberta_dir), [str(label) for label in data.labels])
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), train=quick_train_config(max_length=128))
    with pytest.raises(BertcError, match="--max-length 128 is more than the 127 tokens"):  # the in-memory stage too
        finetune_(model, tokenizer, data, config, tmp_path / "work")
    assert list(tmp_path.iterdir()) == []


def failing_step(monkeypatch, at: int, error: BaseException):
    calls = {"n": 0}
    original = trainer_module.BertcTrainer.training_step

    def training_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.BertcTrainer, "training_step", training_step)


@pytest.mark.parametrize("error", [BertcError("bad data discovered late"), RuntimeError("a bug")])
def test_a_run_failing_before_its_first_checkpoint_leaves_no_work_dir(tmp_path, tiny_bert_dir, tiny_data, monkeypatch,
                                                                      error):
    failing_step(monkeypatch, 2, error)
    out = tmp_path / "m"
    with pytest.raises(type(error), match=f"^{error}$"):
        run_finetune(tiny_bert_dir, tiny_data, out, max_steps=6, save_steps=3)
    assert list(tmp_path.iterdir()) == []


def test_a_run_failing_after_a_checkpoint_keeps_it_and_says_resume_continues(tmp_path, tiny_bert_dir, tiny_data,
                                                                             monkeypatch):
    failing_step(monkeypatch, 5, BertcError("bad data discovered late"))
    out, work = tmp_path / "m", work_dir_for(tmp_path / "m")
    with pytest.raises(BertcError) as caught:
        run_finetune(tiny_bert_dir, tiny_data, out, max_steps=6, save_steps=3)
    assert str(caught.value) == f"bad data discovered late; the checkpoint in {work} lets --resume continue"
    assert not out.exists() and (work / "checkpoints" / "checkpoint-3").is_dir()
    monkeypatch.undo()
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), train=quick_train_config(max_steps=6, save_steps=3))
    finetune(tiny_bert_dir, config, out, resume=True)
    training = json.loads((out / "bertc.json").read_text())["metrics"]["training"]
    assert training["resumed_from"].endswith("checkpoint-3") and training["steps"] == 6
    assert not work.exists()


def test_cli_refuses_a_nan_learning_rate_before_any_work(tmp_path, tiny_bert_dir, tiny_data):
    out = tmp_path / "m"
    result = CliRunner().invoke(app, [*cli_args(tiny_bert_dir, tiny_data, out), "--lr", "nan"])
    assert_one_line_error(result, "--lr must be a finite number, got nan")
    assert list(tmp_path.iterdir()) == []
