"""Trainer callbacks: progress bar, JSONL log, throughput, best checkpoint with early stopping."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

BEST_DIR = "best"
BEST_STATE = "best.json"


class ProgressCallback(TrainerCallback):
    """A rich progress bar showing loss, lr and training samples/s (main process only)."""

    def __init__(self, samples_per_step: int, description: str = "training"):
        self.samples_per_step = samples_per_step
        self.description = description
        self.progress = None
        self.loss = self.lr = None
        self.step_started = None
        self.train_seconds = 0.0
        self.steps_timed = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, completed=state.global_step,
                                           info="")

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.step_started is not None:
            self.train_seconds += time.perf_counter() - self.step_started
            self.steps_timed += 1
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=self.info())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.loss = logs.get("loss", self.loss)
        self.lr = logs.get("learning_rate", self.lr)
        if self.progress is not None:
            self.progress.update(self.task, info=self.info())
            if not self.progress.console.is_terminal:  # logs and CI get a line per log step instead of a bar
                extra = f"  eval accuracy {logs['eval_accuracy']:.4f}" if "eval_accuracy" in logs else ""
                self.progress.console.print(f"{self.description} step {state.global_step}/{state.max_steps}  "
                                            f"{self.info()}{extra}", soft_wrap=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def samples_per_second(self) -> float | None:
        if not self.train_seconds:
            return None
        return self.steps_timed * self.samples_per_step / self.train_seconds

    def info(self) -> str:
        parts = []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:.2e}")
        speed = self.samples_per_second()
        if speed:
            parts.append(f"{speed:.1f} samples/s")
        return "  ".join(parts)


class JsonlLogCallback(TrainerCallback):
    """Append every log record (loss, lr, eval metrics) to a JSONL file."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """On resume, forget log records written after the checkpoint we restart from."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


class BestModelCallback(TrainerCallback):
    """Keep the weights with the best eval metric on disk; stop after ``patience`` evals without progress.

    Kept outside Trainer's checkpoints so checkpoints can be frequent (for --resume) while evaluation is not.
    """

    def __init__(self, work_dir: Path, metric: str = "eval_accuracy", patience: int | None = None):
        self.dir = work_dir / BEST_DIR
        self.metric = metric
        self.patience = patience
        self.best, self.best_step, self.bad_evals = None, None, 0
        state_file = work_dir / BEST_STATE
        self.state_file = state_file
        if state_file.is_file():
            saved = json.loads(state_file.read_text())
            self.best, self.best_step, self.bad_evals = saved["best"], saved["step"], saved["bad_evals"]

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None:
            return
        if self.best_step == state.global_step:
            return
        if self.best is None or value > self.best:
            self.best, self.best_step, self.bad_evals = value, state.global_step, 0
            if state.is_world_process_zero:
                self.dir.mkdir(parents=True, exist_ok=True)
                weights = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
                save_file(weights, str(self.dir / "model.safetensors"))
        else:
            self.bad_evals += 1
            if self.patience is not None and self.bad_evals >= self.patience:
                control.should_training_stop = True
        if state.is_world_process_zero:
            self.state_file.write_text(json.dumps({"best": self.best, "step": self.best_step,
                                                   "bad_evals": self.bad_evals}))

    def restore_best_(self, model) -> bool:
        """Load the best weights into ``model``; False when none were kept."""
        file = self.dir / "model.safetensors"
        if not file.is_file():
            return False
        state = load_file(str(file), device=str(next(model.parameters()).device))
        unwrap(model).load_state_dict(state)
        return True


def unwrap(model):
    return getattr(model, "module", model)
