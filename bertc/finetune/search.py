"""`bertc finetune --search`: the training options searched with Optuna through transformers'
``Trainer.hyperparameter_search``, which runs the trials and stops bad ones early (a median pruner).

Every trial starts from the same weights (``model_init`` copies the starting model), trains on a seeded sample of
the training rows and is scored by its accuracy on the evaluation data, measured a few times per epoch so the
pruner can compare trials while they run. A seeded TPE sampler makes the search repeatable.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
from transformers import DataCollatorWithPadding
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_callback import ProgressCallback as HFProgressCallback

from bertc.data.batching import to_hf_dataset
from bertc.data.load import TextDataset
from bertc.data.prepare import PreparedData
from bertc.errors import BertcError
from bertc.finetune.config import EVALUATIONS_PER_EPOCH, FinetuneConfig, SearchParam
from bertc.training.callbacks import ProgressCallback
from bertc.training.config import TrainConfig
from bertc.training.trainer import BertcTrainer, check_device, compute_metrics, training_arguments
from bertc.training.workdir import CONFIG_FILE, has_checkpoint

OBJECTIVE = "eval_accuracy"
STUDY = "bertc-finetune-search"


@dataclass
class SearchResult:
    train: TrainConfig  # the training options with the best trial's values
    record: dict  # the manifest's "search": the space, every trial, the best one


class SearchTrainer(BertcTrainer):
    """Reports each evaluation to the pruner by its number in the trial, not by its step: trials of different
    batch sizes take different numbers of steps, and Optuna's pruners compare trials at equal steps."""

    def _report_to_hp_search(self, trial, step, metrics):
        # rounded up: the evaluation Trainer adds at the last step, between two regular ones, is one more
        super()._report_to_hp_search(trial, math.ceil(step / self.args.eval_steps), metrics)


def search_training(model, tokenizer, data: PreparedData, config: FinetuneConfig, work_dir: Path, *,
                    resume: bool = False) -> SearchResult:
    """Run the trials of ``config.search`` on copies of ``model`` (left as it is); the trials' files go to a
    directory in ``work_dir``, removed afterwards."""
    check_work_dir(work_dir, resume)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BertcError("--search runs its trials in one process; start it without torchrun")
    if not len(data.eval):
        raise BertcError("--search scores trials on evaluation data and there is none; pass --eval or a larger "
                         "--val-fraction")
    space, base = config.search_space(), config.train
    device = check_device(base)
    label2id = {label: i for i, label in enumerate(data.labels)}
    rows = sample_rows(data.train, config.search_samples, base.seed)
    trials_dir = work_dir / "search"

    def arguments(train_config: TrainConfig):  # trials keep no checkpoints: a pruned trial is thrown away
        args = training_arguments(train_config, trials_dir, device, has_eval=True)
        return dataclasses.replace(args, save_strategy="no")

    first = trial_config(base, {}, len(rows))
    progress = ProgressCallback(first.batch_size * first.grad_accum, "search")
    trainer = SearchTrainer(
        model_init=lambda: copy.deepcopy(model), args=arguments(first),
        train_dataset=to_hf_dataset(tokenizer, rows, label2id, base.max_length),
        eval_dataset=to_hf_dataset(tokenizer, data.eval, label2id, base.max_length),
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer, compute_metrics=compute_metrics,
        callbacks=[progress], train_config=first)
    for callback in (PrinterCallback, HFProgressCallback):
        trainer.remove_callback(callback)

    def hp_space(trial: optuna.Trial) -> dict:
        """The trial's options: bertc's optimizer and schedule read them from ``train_config``, Trainer from the
        TrainingArguments fields returned here."""
        trainer.train_config = trial_config(base, {p.name: suggest(trial, p) for p in space}, len(rows))
        progress.description = f"search trial {trial.number + 1}/{config.search_trials}"
        progress.samples_per_step = trainer.train_config.batch_size * trainer.train_config.grad_accum
        progress.loss = progress.lr = None  # the last trial's
        return changed_arguments(trainer.args, arguments(trainer.train_config))

    storage = optuna.storages.InMemoryStorage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials table says what its INFO lines would
    trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=lambda metrics: metrics[OBJECTIVE], n_trials=config.search_trials,
        direction="maximize", backend="optuna", study_name=STUDY, storage=storage,
        sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))  # never at a first evaluation
    shutil.rmtree(trials_dir, ignore_errors=True)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    best = study.best_trial
    record = {"space": config.search, "train_rows": len(rows), "objective": OBJECTIVE,
              "trials": [trial_record(t) for t in study.trials],
              "best": {"trial": best.number + 1, "params": best.params, OBJECTIVE: best.value}}
    return SearchResult(train=dataclasses.replace(base, **best.params), record=record)


def check_work_dir(work_dir: Path, resume: bool) -> None:
    """Fail before the search, not after it, where the final training could not start (``prepare_work_dir``)."""
    if resume and not (work_dir / CONFIG_FILE).is_file():
        raise BertcError(f"nothing to resume: {work_dir} holds no interrupted run; drop --resume")
    if not resume and has_checkpoint(work_dir):
        raise BertcError(f"an interrupted run left checkpoints in {work_dir}; pass --resume to continue it, "
                         "or delete that directory to start over")


def sample_rows(rows: TextDataset, samples: int | None, seed: int) -> TextDataset:
    """``samples`` rows drawn at random (seeded), in their order; all of them when None."""
    if samples is None or samples >= len(rows):
        return rows
    return rows.select(sorted(random.Random(seed).sample(range(len(rows)), samples)))


def trial_config(base: TrainConfig, values: dict, train_rows: int) -> TrainConfig:
    """``base`` with a trial's values, evaluating ``EVALUATIONS_PER_EPOCH`` times per epoch."""
    config = dataclasses.replace(base, **values)
    steps = config.max_steps or math.ceil(train_rows / (config.batch_size * config.grad_accum))
    return dataclasses.replace(config, eval_steps=max(1, round(steps / EVALUATIONS_PER_EPOCH)))


def suggest(trial: optuna.Trial, param: SearchParam):
    if param.choices:
        return trial.suggest_categorical(param.name, list(param.choices))
    if isinstance(param.low, int):
        return trial.suggest_int(param.name, param.low, param.high, log=param.log)
    return trial.suggest_float(param.name, param.low, param.high, log=param.log)


def changed_arguments(current, wanted) -> dict:
    """The TrainingArguments fields where ``wanted`` differs from ``current``."""
    names = [f.name for f in dataclasses.fields(wanted) if f.init]
    return {name: getattr(wanted, name) for name in names if getattr(wanted, name) != getattr(current, name)}


def trial_record(trial: optuna.trial.FrozenTrial) -> dict:
    """What a trial tried and how far it got; a pruned trial's accuracy is its last evaluation's."""
    steps = sorted(trial.intermediate_values)
    value = trial.value if trial.value is not None else (trial.intermediate_values[steps[-1]] if steps else None)
    return {"trial": trial.number + 1, "state": trial.state.name.lower(), "params": trial.params, OBJECTIVE: value,
            "evaluations": len(steps),
            "seconds": round(trial.duration.total_seconds(), 2) if trial.duration is not None else None}
