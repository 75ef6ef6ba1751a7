"""The one training loop of bertc: transformers' Trainer with bertc's optimizers, schedules and callbacks.

Fine-tuning, recovery after pruning and distillation all call :func:`train_model`; distillation only swaps
the loss by passing a Trainer subclass.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_callback import ProgressCallback as HFProgressCallback

from bertc.data.batching import to_hf_dataset
from bertc.data.prepare import PreparedData
from bertc.errors import BertcError
from bertc.metrics import quick_metrics
from bertc.modeling import check_max_length
from bertc.training.callbacks import BestModelCallback, JsonlLogCallback, ProgressCallback, truncate_log, unwrap
from bertc.training.config import TrainConfig
from bertc.training.optim import build_optimizer, build_scheduler
from bertc.training.workdir import CHECKPOINTS, is_main_process, prepare_work_dir

LOG_FILE = "train_log.jsonl"


class BertcTrainer(Trainer):
    """Trainer whose optimizer and schedule come from a :class:`TrainConfig`."""

    # Sequence-classification losses are per-batch means (they ignore num_items_in_batch), so Trainer must divide
    # them by the accumulation steps; left to its default it assumes they were not and sums --grad-accum batches.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, train_config: TrainConfig, **kwargs):
        self.train_config = train_config
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model if model is None else model, self.train_config)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(optimizer or self.optimizer, self.train_config, num_training_steps)
            self._created_lr_scheduler = True
        return self.lr_scheduler


@dataclass
class TrainResult:
    model: object
    metrics: dict  # training summary: steps, epochs, runtime, samples/s, best step
    log_file: Path
    distributed: dict | None = None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BertcError("--device cuda was given but no CUDA GPU is available; use --device cpu or auto")
    return device


def check_device(config: TrainConfig) -> str:
    """The device training will use; fails before any work when the precision cannot run there."""
    device = resolve_device(config.device)
    if config.precision == "fp16" and device != "cuda":
        raise BertcError("--precision fp16 needs CUDA; use --precision bf16 on CPU")
    return device


def training_arguments(config: TrainConfig, work_dir: Path, device: str, has_eval: bool) -> TrainingArguments:
    eval_kwargs = {"eval_strategy": "no"}
    if has_eval:
        eval_kwargs = ({"eval_strategy": "steps", "eval_steps": config.eval_steps} if config.eval_steps
                       else {"eval_strategy": "epoch"})
    return TrainingArguments(
        output_dir=str(work_dir / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm if config.max_grad_norm > 0 else 0.0,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        **eval_kwargs,
    )


def compute_metrics(eval_pred) -> dict:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return quick_metrics(labels, np.argmax(logits, axis=-1), logits.shape[-1])


def train_model(model, tokenizer, data: PreparedData, label2id: dict, config: TrainConfig, work_dir: Path,
                resume: bool = False, trainer_class=BertcTrainer, trainer_kwargs: dict | None = None,
                description: str = "training") -> TrainResult:
    """Train ``model`` in place on ``data``; checkpoints go to ``work_dir`` so a killed run can resume."""
    device = check_device(config)
    check_max_length(unwrap(model), config.max_length)
    record = {**asdict(config), "train_examples": len(data.train), "eval_examples": len(data.eval)}
    checkpoint = prepare_work_dir(work_dir, record, resume)
    log_file = work_dir / LOG_FILE
    if checkpoint and is_main_process():
        truncate_log(log_file, int(checkpoint.split("-")[-1]))

    train_set = to_hf_dataset(tokenizer, data.train, label2id, config.max_length)
    eval_set = to_hf_dataset(tokenizer, data.eval, label2id, config.max_length) if len(data.eval) else None
    args = training_arguments(config, work_dir, device, eval_set is not None)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    progress = ProgressCallback(config.batch_size * config.grad_accum * world, description)
    best = BestModelCallback(work_dir, patience=config.early_stopping_patience)
    trainer = trainer_class(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        compute_metrics=compute_metrics, callbacks=[progress, JsonlLogCallback(log_file), best],
        train_config=config, **(trainer_kwargs or {}))
    for callback in (PrinterCallback, HFProgressCallback):
        trainer.remove_callback(callback)

    output = trainer.train(resume_from_checkpoint=checkpoint)
    if eval_set is not None:
        trainer.evaluate()
        best.restore_best_(trainer.model)
    model = trainer.model
    metrics = {
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "runtime_seconds": output.metrics.get("train_runtime"),
        "train_samples_per_second": progress.samples_per_second(),
        "best_step": best.best_step,
        "best_eval_accuracy": best.best,
        "resumed_from": checkpoint,
        "device": device,
    }
    distributed = gather_parameter_hashes(model) if torch.distributed.is_initialized() else None
    return TrainResult(model=unwrap(model), metrics=metrics, log_file=log_file, distributed=distributed)


def parameter_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_parameter_hashes(model) -> dict:
    """Each rank's weight hash, so a manifest proves data-parallel ranks ended with the same model."""
    hashes = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(hashes, parameter_hash(model))
    return {"world_size": len(hashes), "backend": torch.distributed.get_backend(), "parameter_sha256": hashes}
