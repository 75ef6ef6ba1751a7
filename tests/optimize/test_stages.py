"""The stages `bertc optimize` builds: which stage, from which input, with which options, for each candidate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bertc.bench.config import BenchConfig
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.data.config import Columns, DataConfig, TransferConfig
from bertc.export.config import DynamicQuantConfig, ExportConfig, Fp16Config, QuantizeConfig, StaticQuantConfig
from bertc.finetune.config import FinetuneConfig
from bertc.optimize.config import DISTILL_LR, FINETUNE_LR, RECOVER_LR, OptimizeConfig, SelectConfig
from bertc.optimize.plan import DataPlan
from bertc.optimize.recipe import RecipeStage
from bertc.optimize.search import Candidate, Step
from bertc.optimize.stages import (
    compression_stage,
    deploy_stages,
    distilled_rows,
    finetune_stage,
    measurement_configs,
    task_data,
    train_config,
)
from bertc.training.config import TrainConfig

PLAN = DataPlan(train="/d/train.tsv", selection="/d/dev.tsv", test="/d/test.tsv",
                columns=Columns("review", None, "stars"), labels=["neg", "pos"], train_rows=5000,
                selection_rows=400, test_rows=800)
COLUMNS = {"text_column": "review", "text_pair_column": None, "label_column": "stars"}


def config(**options) -> OptimizeConfig:
    return OptimizeConfig(train="/d", preset="quick", batch_size=16, max_length=64, seed=7, **options)


def test_train_config_carries_the_runs_batch_length_and_seed():
    assert train_config(config(), lr=1e-4, epochs=2.0) == TrainConfig(
        lr=1e-4, epochs=2.0, batch_size=16, max_length=64, seed=7, device="auto", save_steps=200, logging_steps=20)


def test_task_data_takes_the_first_rows_and_evaluates_on_a_split_of_them_not_the_selection_slice():
    assert task_data(config(), PLAN, 1000) == DataConfig(
        train="/d/train.tsv", eval=None, val_fraction=0.05, max_train_samples=1000, max_eval_samples=1000, seed=7,
        **COLUMNS)
    assert task_data(config(), PLAN, None).max_train_samples is None


def test_the_finetune_stage_uses_the_preset_unless_options_are_given():
    stage = finetune_stage(config(model="/models/bert"), PLAN)
    assert (stage.name, stage.kind, stage.input) == ("finetune", "finetune", "/models/bert")
    assert stage.config == FinetuneConfig(data=task_data(config(), PLAN, 4000),
                                          train=train_config(config(), FINETUNE_LR, 1.0))
    tuned = finetune_stage(config(lr=3e-5, finetune_epochs=2.5, finetune_samples=100), PLAN).config
    assert (tuned.train.lr, tuned.train.epochs, tuned.data.max_train_samples) == (3e-5, 2.5, 100)
    assert finetune_stage(config(), PLAN).input is None  # the embedded MiniLM
    assert finetune_stage(config(), PLAN).config.search is None  # quick: no search


def test_the_full_preset_searches_the_learning_rate_then_trains_on_every_row():
    full = OptimizeConfig(train="/d", seed=7)
    finetune = finetune_stage(full, PLAN).config
    assert (finetune.search, finetune.trials, finetune.search_samples) == ("lr=3e-5:1.5e-4:log", 4, 4000)
    assert finetune.data.max_train_samples is None and finetune.train.epochs == 2.0
    assert finetune_stage(OptimizeConfig(train="/d", search="none"), PLAN).config.search is None
    assert finetune_stage(OptimizeConfig(train="/d", lr=5e-5), PLAN).config.search is None  # a fixed lr: no search
    given = finetune_stage(OptimizeConfig(train="/d", search="batch_size=16|32", trials=2), PLAN).config
    assert (given.search, given.trials) == ("batch_size=16|32", 2)
    # 4 search trials of 2 epochs on 4,000 rows, each evaluating 250 rows (5%) 4 times an epoch at a third of a
    # training row's cost, then 2 epochs of all 5,000
    assert full.finetune_rows_seen(5000) == pytest.approx(4 * 2 * (4000 + 4 * 250 / 3) + 2 * 5000)
    assert full.finetune_rows_seen(60000) == pytest.approx(4 * 2 * (4000 + 4 * 1000 / 3) + 2 * 60000)
    assert OptimizeConfig(train="/d", preset="quick").finetune_rows_seen(5000) == 4000


def test_students_distil_on_augmented_copies_when_asked_but_not_for_sentence_pairs():
    assert compression_stage(OptimizeConfig(train="/d"), PLAN, "layers2", Step("layers", 2),
                             "finetune").config.transfer.augment_copies == 0  # the full preset: labelled rows only
    full = OptimizeConfig(train="/d", seed=7, unlabeled="extra.txt", augment_copies=1)
    transfer = compression_stage(full, PLAN, "layers2", Step("layers", 2), "finetune").config.transfer
    assert transfer == TransferConfig(unlabeled=str(Path("extra.txt").resolve()), augment_copies=1, seed=7)
    pairs = dataclasses.replace(PLAN, pairs=True)
    assert compression_stage(full, pairs, "layers2", Step("layers", 2), "finetune").config.transfer.augment_copies == 0


def test_the_full_preset_distils_each_student_for_two_epochs_and_counts_them_in_its_estimate():
    def epochs(**options) -> float:
        return compression_stage(OptimizeConfig(train="/d", **options), PLAN, "layers3", Step("layers", 3),
                                 "finetune").config.train.epochs
    assert (epochs(), epochs(preset="quick"), epochs(distill_epochs=3.0)) == (2.0, 1.0, 3.0)
    # PLAN has 5,000 training rows, fewer than either preset distils on
    assert distilled_rows(OptimizeConfig(train="/d"), PLAN) == 2 * 5000
    assert distilled_rows(OptimizeConfig(train="/d", augment_copies=2, distill_samples=1000), PLAN) == 2 * 3 * 1000
    # augmented copies are not made for sentence pairs, so they are not counted either
    pairs = dataclasses.replace(PLAN, pairs=True)
    assert distilled_rows(OptimizeConfig(train="/d", augment_copies=2, distill_samples=1000), pairs) == 2 * 1000


def test_fewer_layers_are_distilled_with_hidden_and_attention_losses():
    stage = compression_stage(config(), PLAN, "layers3", Step("layers", 3), "finetune")
    assert stage == RecipeStage("layers3", "distill", DistillConfig(
        student_layers=3, data=task_data(config(), PLAN, 4000), train=train_config(config(), DISTILL_LR),
        loss=DistillLoss(hidden_weight=1.0, attention_weight=1.0), transfer=TransferConfig(seed=7)), "finetune")


@pytest.mark.parametrize("step, targets", [(Step("heads", 8), {"heads": 8}), (Step("ffn", 50), {"ffn": 0.5})])
def test_fewer_heads_or_neurons_are_pruned_with_distillation_from_the_parent(step, targets):
    stage = compression_stage(config(recover_samples=300, importance_samples=64), PLAN, "layers3+x", step, "layers3")
    assert (stage.name, stage.kind, stage.input) == ("layers3+x", "prune", "layers3")
    assert stage.config == PruneConfig(**targets, data=task_data(config(), PLAN, 300), distill=True,
                                       recover=train_config(config(), RECOVER_LR), importance_samples=64)


def test_an_fp32_candidate_is_only_exported():
    export, quantize = deploy_stages(config(), PLAN, Candidate((Step("layers", 3),), "fp32"), "layers3")
    assert quantize is None
    assert export == RecipeStage("layers3-onnx", "export", ExportConfig(
        data="/d/dev.tsv", split="validation", verify_samples=400, device="cpu"), "layers3")


def test_compressed_candidates_get_per_channel_int8_and_the_standard_recipe_keeps_the_default():
    standard = deploy_stages(config(), PLAN, Candidate((), "int8-dynamic"), "finetune")[1].config.method
    student = deploy_stages(config(), PLAN, Candidate((Step("layers", 3),), "int8-dynamic"), "layers3")[1]
    assert standard == DynamicQuantConfig() and not standard.per_channel
    assert student.config.method == DynamicQuantConfig(per_channel=True)


@pytest.mark.parametrize("precision, method", [
    ("int8-dynamic", DynamicQuantConfig()), ("fp16", Fp16Config()),
    ("int8-static", StaticQuantConfig(calibration_data="/d/train.tsv", seed=7))])
def test_a_quantized_candidate_quantizes_its_export(precision, method):
    candidate = Candidate((), precision)
    export, quantize = deploy_stages(config(), PLAN, candidate, "finetune")
    assert export.name == "base-onnx" and export.input == "finetune"
    assert quantize == RecipeStage(f"base-{precision}", "quantize", QuantizeConfig(
        method=method, eval_data="/d/dev.tsv", split="validation", eval_samples=400, device="cpu"), "base-onnx")


def test_the_remaining_accuracy_budget_is_rounded_and_never_negative():
    candidate = Candidate((), "int8-dynamic")
    assert deploy_stages(config(), PLAN, candidate, "f", remaining_points=0.123456)[1].config.max_accuracy_drop == \
        0.1235
    assert deploy_stages(config(), PLAN, candidate, "f", remaining_points=-0.4)[1].config.max_accuracy_drop == 0.0
    assert deploy_stages(config(), PLAN, candidate, "f")[1].config.max_accuracy_drop is None


def test_cuda_runs_export_and_quantize_on_cuda():
    export, quantize = deploy_stages(config(target="cuda"), PLAN, Candidate((), "fp16"), "finetune")
    assert export.config.device == quantize.config.device == "cuda"


def test_measurement_configs_bench_the_selection_slice_and_choose_by_the_budgets():
    bench, select = measurement_configs(config(max_accuracy_drop=0.5, latency_budget_ms=3.0, test_samples=50), PLAN)
    assert bench == BenchConfig(data="/d/dev.tsv", split="validation", max_samples=400, **COLUMNS, device="cpu",
                                batch_sizes=(1,), seq_lens=("real",), warmup=10, runs=100, rounds=10, memory=False)
    assert select == SelectConfig(max_accuracy_drop=0.5, latency_budget_ms=3.0, test="/d/test.tsv", test_samples=50)
    full, _ = measurement_configs(OptimizeConfig(train="/d", bench_runs=7), PLAN)
    assert (full.batch_sizes, full.runs, full.memory) == ((1, 8), 7, True)
