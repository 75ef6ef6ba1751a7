"""Trainer callbacks on hand-made trainer states: the JSONL log, the best checkpoint with early stopping, progress."""

import json

import torch
from transformers import TrainerControl, TrainerState

from bertc.training.callbacks import (
    BEST_DIR,
    BEST_STATE,
    BestModelCallback,
    JsonlLogCallback,
    ProgressCallback,
    truncate_log,
    unwrap,
)


def state(step: int, **kwargs) -> TrainerState:
    return TrainerState(global_step=step, epoch=step / 10, max_steps=10, **kwargs)


def linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)
    return layer


def test_jsonl_log_appends_records_of_rank_zero_only(tmp_path):
    log = tmp_path / "train_log.jsonl"
    callback = JsonlLogCallback(log)
    callback.on_log(None, state(2), TrainerControl(), logs={"loss": 0.5})
    callback.on_log(None, state(3), TrainerControl(), logs={})  # nothing to record
    callback.on_log(None, state(4, is_world_process_zero=False), TrainerControl(), logs={"loss": 0.1})
    callback.on_log(None, state(4), TrainerControl(), logs={"eval_accuracy": 0.75})
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["step"], r.get("loss"), r.get("eval_accuracy")) for r in records] == [(2, 0.5, None), (4, None, 0.75)]
    assert records[0]["epoch"] == 0.2 and "time" in records[0]


def test_truncate_log_forgets_records_after_the_checkpoint(tmp_path):
    log = tmp_path / "train_log.jsonl"
    truncate_log(log, 3)  # no log yet: nothing to do
    assert not log.exists()
    log.write_text("".join(json.dumps({"step": step}) + "\n" for step in (1, 2, 3, 4, 5)))
    truncate_log(log, 3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]


def evaluate(callback, step, accuracy, model, control=None):
    control = control or TrainerControl()
    callback.on_evaluate(None, state(step), control, metrics={"eval_accuracy": accuracy}, model=model)
    return control


def test_best_weights_are_kept_and_restored(tmp_path):
    callback = BestModelCallback(tmp_path)
    evaluate(callback, 2, 0.6, linear(1.0))
    evaluate(callback, 4, 0.8, linear(2.0))  # the best
    evaluate(callback, 6, 0.7, linear(3.0))
    assert (callback.best, callback.best_step, callback.bad_evals) == (0.8, 4, 1)
    assert (tmp_path / BEST_DIR / "model.safetensors").is_file()
    model = linear(0.0)
    assert callback.restore_best_(model)
    assert torch.all(model.weight == 2.0) and torch.all(model.bias == 2.0)
    assert not BestModelCallback(tmp_path / "none").restore_best_(linear(0.0))  # nothing kept: nothing restored


def test_early_stopping_after_patience_evaluations_without_progress(tmp_path):
    callback = BestModelCallback(tmp_path, patience=2)
    assert not evaluate(callback, 2, 0.8, linear(1.0)).should_training_stop
    evaluate(callback, 2, 0.1, linear(1.0))  # the best step evaluated again (after training) is ignored
    assert callback.bad_evals == 0
    assert not evaluate(callback, 4, 0.8, linear(1.0)).should_training_stop  # equal is no progress
    assert evaluate(callback, 6, 0.7, linear(1.0)).should_training_stop
    evaluate(callback, 8, None, linear(1.0))  # no metric: not an evaluation of the tracked metric
    assert callback.bad_evals == 2


def test_best_state_survives_a_resume(tmp_path):
    callback = BestModelCallback(tmp_path, patience=3)
    evaluate(callback, 2, 0.9, linear(1.0))
    evaluate(callback, 4, 0.5, linear(2.0))
    assert json.loads((tmp_path / BEST_STATE).read_text()) == {"best": 0.9, "step": 2, "bad_evals": 1}
    resumed = BestModelCallback(tmp_path, patience=3)
    assert (resumed.best, resumed.best_step, resumed.bad_evals) == (0.9, 2, 1)


def test_progress_reports_loss_lr_and_training_throughput():
    progress = ProgressCallback(samples_per_step=32)
    assert progress.samples_per_second() is None and progress.info() == ""
    progress.on_log(None, state(1), TrainerControl(), logs={"loss": 0.6931, "learning_rate": 5e-5})
    assert progress.info() == "loss 0.6931  lr 5.00e-05"
    for _ in range(2):
        progress.on_step_begin(None, state(1), TrainerControl())
        progress.on_step_end(None, state(1), TrainerControl())
    assert progress.steps_timed == 2 and progress.train_seconds > 0
    assert progress.samples_per_second() == 2 * 32 / progress.train_seconds
    assert progress.info().endswith("samples/s")


def test_unwrap_returns_the_wrapped_module():
    model = linear(1.0)
    assert unwrap(torch.nn.DataParallel(model)) is model and unwrap(model) is model
