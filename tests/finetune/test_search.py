"""`bertc finetune --search`: the search space, the trials (Optuna through Trainer.hyperparameter_search), the
manifest's record of them and the command line."""

from __future__ import annotations

import json
import re

import pytest
from transformers import set_seed
from typer.testing import CliRunner

from bertc.cli import app
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.finetune.config import FinetuneConfig, SearchParam
from bertc.finetune.finetune import finetune, starting_model
from bertc.finetune.search import EVALUATIONS_PER_EPOCH, search_training, trial_config
from bertc.training.config import TrainConfig
from bertc.training.workdir import work_dir_for
from tests.conftest import assert_one_line_error, quick_train_config


def config(search, **options):
    return FinetuneConfig(data=DataConfig(train="train.tsv"), search=search, **options)


def test_a_search_space_names_ranges_log_ranges_and_choices():
    space = config("lr=2e-5:2e-4:log, batch-size=16|32,scheduler=linear|cosine,epochs=1:3,grad_accum=1:4"
                   ).search_space()
    assert space == (SearchParam("lr", 2e-5, 2e-4, log=True), SearchParam("batch_size", choices=(16, 32)),
                     SearchParam("schedule", choices=("linear", "cosine")), SearchParam("epochs", 1.0, 3.0),
                     SearchParam("grad_accum", 1, 4))
    assert config("lr=1e-5:1e-4").search_trials == 10 and config("lr=1e-5:1e-4", trials=3).search_trials == 3
    assert config(None).search_space() == ()


@pytest.mark.parametrize("search, options, message", [
    ("dropout=0.1:0.3", {}, "--search: unknown parameter 'dropout'; search one of lr, batch_size, schedule, "
                            "epochs, warmup, weight_decay, optimizer, momentum, max_grad_norm, poly_power, "
                            "exp_final_factor, layer_lr_decay, grad_accum"),
    ("lr=2e-4:2e-5", {}, "--search lr=2e-4:2e-5: the range is empty; give low:high with low below high"),
    ("lr=1e-4:1e-4", {}, "--search lr=1e-4:1e-4: the range is empty; give low:high with low below high"),
    ("weight_decay=0:0.1:log", {}, "--search weight_decay=0:0.1:log: a log range needs a low above 0"),
    ("lr=-1e-4:1e-4", {}, "--search lr=-1e-4:1e-4: --lr must be positive, got -0.0001"),
    ("schedule=linear|step", {}, "--search schedule=linear|step: --schedule 'step' is not one of linear, cosine, "
                                 "constant, polynomial, exponential"),
    ("schedule=linear:cosine", {}, "--search schedule=linear:cosine: schedule takes choices such as "
                                   "linear|cosine, not a range"),
    ("batch_size=16.5:32", {}, "--search batch_size takes whole numbers, got '16.5'"),
    ("batch_size=16||32", {}, "--search batch_size takes whole numbers, got ''"),
    ("lr=1e-4:2e-4:ln", {}, "--search lr=1e-4:2e-4:ln: a range is low:high or low:high:log"),
    ("lr=1e-4", {}, "--search lr=1e-4: give a range low:high or choices a|b (set a single value with --lr)"),
    ("lr", {}, "--search entry 'lr' is not name=low:high, name=low:high:log or name=a|b|c"),
    (" , ", {}, "--search is empty; give entries such as name=low:high, name=low:high:log or name=a|b|c"),
    ("lr=1e-5:1e-4,learning_rate=1e-5:1e-4", {}, "--search names lr twice"),
    ("epochs=1:3", {"train": TrainConfig(max_steps=10)},
     "--search epochs has no effect with --max-steps, which fixes the length of training"),
    ("lr=1e-5:1e-4", {"trials": 0}, "--trials must be at least 1, got 0"),
    ("lr=1e-5:1e-4", {"search_samples": 0}, "--search-samples must be at least 1, got 0"),
    (None, {"trials": 5}, "--trials needs --search (the training options to search)"),
    (None, {"search_samples": 50}, "--search-samples needs --search (the training options to search)"),
    ("dropout=1:2,lr=2:1", {}, "--search: unknown parameter 'dropout'; search one of lr, batch_size, schedule, "
                               "epochs, warmup, weight_decay, optimizer, momentum, max_grad_norm, poly_power, "
                               "exp_final_factor, layer_lr_decay, grad_accum; --search lr=2:1: the range is empty; "
                               "give low:high with low below high"),
])
def test_a_bad_search_is_one_line_naming_the_problem(search, options, message):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        config(search, **options)


def test_trials_evaluate_four_times_per_epoch_whatever_their_batch_size():
    assert trial_config(TrainConfig(batch_size=16), {}, 160).eval_steps == 2  # 10 steps per epoch
    assert trial_config(TrainConfig(batch_size=16), {"batch_size": 32}, 160).eval_steps == 1
    assert trial_config(TrainConfig(max_steps=40), {}, 160).eval_steps == 40 // EVALUATIONS_PER_EPOCH
    assert trial_config(TrainConfig(), {"lr": 1e-3}, 3).lr == 1e-3


def run_search(tiny_bert_dir, tiny_data, tmp_path, search, trials, seed=42, samples=None, **train_options):
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), search=search, trials=trials,
                            search_samples=samples, train=quick_train_config(seed=seed, **train_options))
    data = prepare_data(config.data)
    set_seed(seed)  # the new head's weights, as finetune() does
    model, tokenizer = starting_model(str(tiny_bert_dir), data.labels)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = search_training(model, tokenizer, data, config, tmp_path / "work")
    assert all(v.equal(before[k]) for k, v in model.state_dict().items())  # trials train copies
    assert not (tmp_path / "work" / "search").exists()
    return result


def test_the_search_is_repeatable_and_prunes_trials_that_fall_behind(tmp_path, tiny_bert_dir, tiny_data):
    # 3 epochs of the tiny task: lr 5e-3 learns it, 1e-6 stays at chance, so a 1e-6 trial after the first two
    # (which always complete) falls below their median and is stopped
    first = run_search(tiny_bert_dir, tiny_data, tmp_path / "a", "lr=1e-6|5e-3", 4, epochs=3)
    again = run_search(tiny_bert_dir, tiny_data, tmp_path / "b", "lr=1e-6|5e-3", 4, epochs=3)
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in first.record["trials"]]
    assert strip == [{k: v for k, v in t.items() if k != "seconds"} for t in again.record["trials"]]
    trials = first.record["trials"]
    assert [t["trial"] for t in trials] == [1, 2, 3, 4]
    complete = [t for t in trials if t["state"] == "complete"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and all(t["params"]["lr"] == 1e-6 for t in pruned), trials
    assert all(t["evaluations"] == 12 for t in complete)  # 15 steps an epoch: every 4th of 45 and the last
    assert all(2 <= t["evaluations"] < 12 for t in pruned)  # never at the first evaluation
    best = max(complete, key=lambda t: t["eval_accuracy"])
    assert best["params"]["lr"] == 5e-3 and best["eval_accuracy"] >= 0.8
    assert first.record["best"] == {"trial": best["trial"], "params": best["params"],
                                    "eval_accuracy": best["eval_accuracy"]}
    assert first.train == quick_train_config(epochs=3, lr=5e-3)
    assert first.record["train_rows"] == len(prepare_data(DataConfig(train=str(tiny_data))).train)


def test_the_seed_drives_the_sampler(tmp_path, tiny_bert_dir, tiny_data):
    def tried(seed):
        result = run_search(tiny_bert_dir, tiny_data, tmp_path / str(seed), "lr=1e-5:1e-3:log", 2, seed=seed,
                            samples=16, max_steps=1)
        return [t["params"]["lr"] for t in result.record["trials"]]

    assert tried(1) != tried(2)  # the same seed gives the same trials: see above


def test_finetune_trains_the_best_trials_options_on_all_rows_and_records_every_trial(tmp_path, tiny_bert_dir,
                                                                                   tiny_data):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "finetune", "--model", str(tiny_bert_dir), "--train", str(tiny_data), "--out", str(out), "--device", "cpu",
        "--max-length", "32", "--epochs", "1", "--search", "lr=1e-4:3e-3:log,schedule=linear|cosine", "--trials",
        "3", "--search-samples", "80"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "bertc.json").read_text())
    search = manifest["search"]
    assert search["space"] == "lr=1e-4:3e-3:log,schedule=linear|cosine" and search["train_rows"] == 80
    assert len(search["trials"]) == 3 and all(t["state"] == "complete" for t in search["trials"])
    best = search["best"]
    assert best["params"] == search["trials"][best["trial"] - 1]["params"]
    assert manifest["config"]["train"]["lr"] == best["params"]["lr"]
    assert manifest["config"]["train"]["schedule"] == best["params"]["schedule"]
    assert manifest["metrics"]["training"]["steps"] == 240 // 32 + 1  # the final model: all 240 rows, batch 32
    assert f"search of {search['space']} on 80 training rows" in result.output
    assert f"{best['trial']} (best)" in result.output


def test_a_bad_search_on_the_command_line_writes_nothing(tmp_path, tiny_bert_dir, tiny_data):
    base = ["finetune", "--model", str(tiny_bert_dir), "--train", str(tiny_data), "--out", str(tmp_path / "out")]
    for extra, phrase in ((["--search", "dropout=0.1:0.2"], "unknown parameter 'dropout'"),
                          (["--search", "lr=2e-4:2e-5"], "the range is empty"),
                          (["--search", "lr=2e-5:2e-4", "--trials", "0"], "--trials must be at least 1"),
                          (["--trials", "4"], "--trials needs --search")):
        assert_one_line_error(CliRunner().invoke(app, base + extra), phrase)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_search_that_could_not_end_in_training_fails_before_its_trials(tmp_path, tiny_bert_dir, tiny_data,
                                                                          monkeypatch):
    import bertc.finetune.search as search_module

    monkeypatch.setattr(search_module, "SearchTrainer", None)  # any trial would fail on it
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), search="lr=1e-5:1e-4", trials=2,
                            train=quick_train_config())
    with pytest.raises(BertcError, match="^nothing to resume: .* holds no interrupted run; drop --resume$"):
        finetune(tiny_bert_dir, config, tmp_path / "out", resume=True)
    checkpoint = work_dir_for(tmp_path / "out") / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    with pytest.raises(BertcError, match="^an interrupted run left checkpoints in .*; pass --resume to continue"):
        finetune(tiny_bert_dir, config, tmp_path / "out")
    assert checkpoint.is_dir() and not (tmp_path / "out").exists()
