"""The one training loop: devices, Trainer arguments, bertc's optimizer and schedule, and a tiny run."""

import json

import numpy as np
import pytest
import torch

from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import load_pretrained_classifier
from bertc.training.config import TrainConfig
from bertc.training.trainer import (
    LOG_FILE,
    BertcTrainer,
    check_device,
    compute_metrics,
    parameter_hash,
    resolve_device,
    train_model,
    training_arguments,
)
from bertc.training.workdir import CONFIG_FILE
from tests.conftest import quick_train_config

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture
def classifier(tiny_bert_dir):
    return load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])


@pytest.fixture
def model(classifier):
    return classifier[0]


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cpu" if NO_CUDA else "cuda")
    if NO_CUDA:
        with pytest.raises(BertcError, match="--device cuda was given but no CUDA GPU is available"):
            resolve_device("cuda")
        with pytest.raises(BertcError, match="--precision fp16 needs CUDA"):
            check_device(TrainConfig(precision="fp16", device="auto"))
    assert check_device(TrainConfig(precision="bf16", device="cpu")) == "cpu"


def test_training_arguments_follow_the_config(tmp_path):
    config = TrainConfig(batch_size=8, grad_accum=2, max_steps=7, max_grad_norm=0.0, eval_steps=3, seed=5,
                         group_by_length=True, precision="bf16", device="cpu")
    args = training_arguments(config, tmp_path, "cpu", has_eval=True)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.max_steps) == (8, 2, 7)
    assert args.eval_strategy == "steps" and args.eval_steps == 3 and args.max_grad_norm == 0.0
    assert args.bf16 and not args.fp16 and args.use_cpu and args.seed == args.data_seed == 5
    assert args.train_sampling_strategy == "group_by_length"
    assert args.output_dir == str(tmp_path / "checkpoints") and args.report_to == []
    assert training_arguments(TrainConfig(), tmp_path, "cpu", has_eval=True).eval_strategy == "epoch"
    unevaluated = training_arguments(TrainConfig(), tmp_path, "cpu", has_eval=False)
    assert unevaluated.eval_strategy == "no" and unevaluated.max_steps == -1


def test_trainer_uses_bertc_optimizer_and_schedule(tmp_path, model):
    config = TrainConfig(optimizer="sgd", momentum=0.5, schedule="constant", warmup=0, lr=0.1, device="cpu")
    trainer = BertcTrainer(model=model, args=training_arguments(config, tmp_path, "cpu", False), train_config=config)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5
    scheduler = trainer.create_scheduler(10, optimizer)
    assert trainer.create_optimizer() is optimizer and trainer.create_scheduler(10) is scheduler  # built once
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1)  # constant after a warmup of 0 steps


def test_compute_metrics_takes_the_argmax_of_the_logits():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.0, 5.0]])
    metrics = compute_metrics((logits, np.array([0, 1, 1, 1])))
    assert metrics["accuracy"] == 0.75
    assert compute_metrics(((logits, np.zeros((4, 3))), np.array([0, 1, 0, 1])))["accuracy"] == 1.0


def test_parameter_hash_changes_with_any_weight(model):
    before = parameter_hash(model)
    assert parameter_hash(model) == before
    with torch.no_grad():
        model.classifier.bias[0] += 1e-3
    assert parameter_hash(model) != before


def test_a_tiny_run_trains_in_place_and_records_it(tmp_path, classifier, tiny_data):
    model, tokenizer = classifier
    data = prepare_data(DataConfig(train=str(tiny_data), max_train_samples=64, max_eval_samples=16))
    head = model.classifier.weight.detach().clone()
    work = tmp_path / "work"
    result = train_model(model, tokenizer, data, {0: 0, 1: 1},
                         quick_train_config(max_steps=3, logging_steps=1, eval_steps=2), work)
    assert result.model is model and not torch.equal(model.classifier.weight, head)
    assert result.metrics["steps"] == 3 and result.metrics["device"] == "cpu" and result.metrics["best_step"] in (2, 3)
    assert result.metrics["resumed_from"] is None and result.distributed is None
    records = [json.loads(line) for line in (work / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3] and any("eval_accuracy" in r for r in records)
    assert json.loads((work / CONFIG_FILE).read_text())["train_examples"] == len(data.train)


def test_max_length_beyond_the_position_embeddings_stops_before_the_work_dir(tmp_path, model, tiny_data):
    data = prepare_data(DataConfig(train=str(tiny_data), max_train_samples=32))
    with pytest.raises(BertcError, match="--max-length 129 is more than the 128 tokens the model can read"):
        train_model(model, None, data, {0: 0, 1: 1}, quick_train_config(max_length=129), tmp_path / "work")
    assert not (tmp_path / "work").exists()
