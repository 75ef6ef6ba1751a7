"""The stages `bertc optimize` builds, with the options each one gets, and how the variants are measured.

Every stage is a :class:`~bertc.optimize.recipe.RecipeStage` (what the recipe records and `bertc run` replays);
its input names the stage it starts from, or the artifact given with ``--from``. Every stage evaluates on the
selection slice, so its manifest holds the accuracy the search compares.
"""

from __future__ import annotations

from pathlib import Path

from bertc.bench.config import BenchConfig
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.data.config import DataConfig, TransferConfig
from bertc.export.config import (
    DynamicQuantConfig,
    ExportConfig,
    Fp16Config,
    NncfInt8Config,
    QuantizeConfig,
    StaticQuantConfig,
)
from bertc.finetune.config import FinetuneConfig
from bertc.optimize.config import (
    DISTILL_LR,
    FINETUNE_LR,
    RECOVER_LR,
    STAGE_EVAL_FRACTION,
    STAGE_EVAL_ROWS,
    OptimizeConfig,
    SelectConfig,
)
from bertc.optimize.plan import DataPlan
from bertc.optimize.recipe import RecipeStage
from bertc.optimize.search import Candidate, Step
from bertc.training.config import TrainConfig

LAYERS_LOSS = {"hidden_weight": 1.0, "attention_weight": 1.0}  # TinyBERT-style losses for layer reduction


def train_config(config: OptimizeConfig, lr: float, epochs: float = 1.0) -> TrainConfig:
    return TrainConfig(lr=lr, epochs=epochs, batch_size=config.batch_size, max_length=config.max_length,
                       seed=config.seed, device="auto", save_steps=200, logging_steps=20)


def column_options(plan: DataPlan) -> dict:
    columns = plan.columns
    return {"text_column": columns.text, "text_pair_column": columns.pair, "label_column": columns.label}


# What a training stage evaluates on (to keep its best checkpoint, to score search trials): a stratified 5% of
# its training rows, at most 1,000, so the selection slice stays held out from every choice made in training.


def task_data(config: OptimizeConfig, plan: DataPlan, samples: int | None) -> DataConfig:
    """The first ``samples`` training rows, less the share the stage evaluates on (never the selection slice)."""
    return DataConfig(train=plan.train, eval=None, val_fraction=STAGE_EVAL_FRACTION, **column_options(plan),
                      max_train_samples=samples, max_eval_samples=STAGE_EVAL_ROWS, seed=config.seed)


def finetune_stage(config: OptimizeConfig, plan: DataPlan) -> RecipeStage:
    """Fine-tune ``config.model`` (None: the embedded MiniLM): the baseline every candidate is compared with."""
    space = config.search_space()
    finetune = FinetuneConfig(data=task_data(config, plan, config.setting("finetune_samples")),
                              train=train_config(config, config.lr or FINETUNE_LR, config.setting("finetune_epochs")),
                              search=space, trials=config.setting("trials") if space else None,
                              search_samples=config.setting("search_samples") if space else None)
    return RecipeStage("finetune", "finetune", finetune, config.model)


def augment_copies(config: OptimizeConfig, plan: DataPlan) -> int:
    """Augmented copies of each text a shallower student also learns from: none for sentence pairs, whose
    word-swapped halves would no longer belong together."""
    return 0 if plan.pairs else config.setting("augment_copies")


def distilled_rows(config: OptimizeConfig, plan: DataPlan) -> float:
    """Rows a shallower student trains on over all its epochs (unlabeled texts not counted: their number is
    known only once read)."""
    rows = min(plan.train_rows, config.setting("distill_samples")) * (1 + augment_copies(config, plan))
    return rows * config.setting("distill_epochs")


def compression_stage(config: OptimizeConfig, plan: DataPlan, node: str, step: Step, parent: str) -> RecipeStage:
    """One compression step from the stage (or artifact) ``parent``: fewer layers by distillation, or fewer heads,
    a narrower model or a smaller FFN by pruning with distillation from the parent."""
    setting = config.setting
    if step.kind == "layers":
        unlabeled = str(Path(config.unlabeled).resolve()) if config.unlabeled else None
        transfer = TransferConfig(unlabeled=unlabeled, augment_copies=augment_copies(config, plan), seed=config.seed)
        distill = DistillConfig(student_layers=step.value, data=task_data(config, plan, setting("distill_samples")),
                                train=train_config(config, DISTILL_LR, setting("distill_epochs")),
                                loss=DistillLoss(**LAYERS_LOSS), transfer=transfer)
        return RecipeStage(node, "distill", distill, parent)
    prune = PruneConfig(**step.prune_options(), data=task_data(config, plan, setting("recover_samples")), distill=True,
                        recover=train_config(config, RECOVER_LR), importance_samples=setting("importance_samples"))
    return RecipeStage(node, "prune", prune, parent)


def deploy_stages(config: OptimizeConfig, plan: DataPlan, candidate: Candidate, parent: str,
                  remaining_points: float | None = None) -> tuple[RecipeStage, RecipeStage | None]:
    """The fused ONNX export of ``parent`` (the candidate's node) and, unless fp32, its quantization, which keeps
    its most sensitive layers in float to lose at most ``remaining_points`` (None: plain)."""
    export = RecipeStage(f"{candidate.node}-onnx", "export", ExportConfig(
        data=plan.selection, split="validation", verify_samples=plan.selection_rows, device=config.target), parent)
    if candidate.precision == "fp32":
        return export, None
    # Compressed candidates get per-channel int8 weights, at the same speed: on SST-2's test.tsv the full run's
    # teacher in int8 scored 89.3% with them and 88.0% per tensor (89.9% in float), its 3-layer student 88.2% and
    # 88.0%. The standard recipe keeps ONNX Runtime's default, per tensor.
    method = {"int8-dynamic": DynamicQuantConfig(per_channel=candidate.compressed), "fp16": Fp16Config(),
              "int8-static": StaticQuantConfig(calibration_data=plan.train, seed=config.seed)}
    quantize = RecipeStage(candidate.name, "quantize", QuantizeConfig(
        method=method[candidate.precision], eval_data=plan.selection, split="validation",
        eval_samples=plan.selection_rows, device=config.target,
        max_accuracy_drop=None if remaining_points is None else round(max(0.0, remaining_points), 4)), export.name)
    return export, quantize


def openvino_stages(config: OptimizeConfig, plan: DataPlan, candidate: Candidate, parent: str, *, bf16: bool,
                    remaining_points: float | None = None) -> list[RecipeStage]:
    """The OpenVINO deployables of ``candidate`` from its PyTorch node ``parent``, in build order: the fp32 IR;
    unless the candidate is fp32, its NNCF int8 quantization (losing at most ``remaining_points``, None: plain);
    and, where the CPU has bf16 (``bf16``), an IR run in bf16. The fp32 IR is a deployable of fp32 candidates
    only; otherwise it is the int8 model's parent, as the fused fp32 ONNX is in ONNX Runtime."""
    def ir(precision: str) -> RecipeStage:
        return RecipeStage(f"{candidate.node}-openvino-{'fp32' if precision == 'f32' else precision}", "export",
                           ExportConfig(openvino=True, inference_precision=precision, data=plan.selection,
                                        split="validation", verify_samples=plan.selection_rows), parent)

    fp32 = ir("f32")
    stages = [fp32]
    if candidate.precision != "fp32":
        stages.append(RecipeStage(f"{candidate.node}-openvino-int8", "quantize", QuantizeConfig(
            method=NncfInt8Config(calibration_data=plan.train, seed=config.seed), eval_data=plan.selection,
            split="validation", eval_samples=plan.selection_rows,
            max_accuracy_drop=None if remaining_points is None else round(max(0.0, remaining_points), 4)),
            fp32.name))
    if bf16:
        stages.append(ir("bf16"))
    return stages


def measurement_configs(config: OptimizeConfig, plan: DataPlan) -> tuple[BenchConfig, SelectConfig]:
    """How the variants are benched (on the selection slice) and chosen."""
    bench = BenchConfig(data=plan.selection, split="validation", max_samples=plan.selection_rows,
                        **column_options(plan), device=config.target,
                        batch_sizes=tuple(sorted({*config.setting("batch_sizes"), 1, config.serve_batch})),
                        seq_lens=("real",), warmup=10, runs=config.setting("bench_runs"), rounds=10,
                        memory=config.setting("memory"))
    select = SelectConfig(max_accuracy_drop=config.max_accuracy_drop, latency_budget_ms=config.latency_budget_ms,
                          test=plan.test, test_samples=config.test_samples, serve_batch=config.serve_batch)
    return bench, select
