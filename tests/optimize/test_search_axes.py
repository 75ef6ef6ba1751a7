"""`bertc optimize` on the hidden-width and per-layer heads axes: the prune stages they become, and a run that
builds them on the tiny model (hidden 32, 4 heads of width 8)."""

from __future__ import annotations

import json

import pytest

from bertc.artifact import is_artifact, read_manifest
from bertc.compress.config import PruneConfig
from bertc.data.config import Columns
from bertc.errors import BertcError
from bertc.optimize.config import RECOVER_LR, OptimizeConfig
from bertc.optimize.optimize import optimize
from bertc.optimize.plan import DataPlan
from bertc.optimize.recipe import RecipeStage
from bertc.optimize.search import parse_candidate
from bertc.optimize.stages import compression_stage, task_data, train_config

PLAN = DataPlan(train="/d/train.tsv", selection="/d/dev.tsv", test=None, columns=Columns("sentence", None, "label"),
                labels=["0", "1"], train_rows=5000, selection_rows=400, test_rows=0)


def stage_of(spec: str, parent: str = "finetune") -> RecipeStage:
    config = OptimizeConfig(train="/d", preset="quick")
    step = parse_candidate(spec, "cpu").steps[-1]
    return compression_stage(config, PLAN, spec, step, parent)


@pytest.mark.parametrize("spec, options", [
    ("hidden256", {"hidden": 256}),
    ("heads6last3", {"heads_per_layer": "-3:6,-2:6,-1:6"}),
    ("heads8", {"heads": 8}),
    ("ffn50", {"ffn": 0.5}),
])
def test_each_pruning_step_is_one_prune_stage_recovered_by_distillation_from_its_parent(spec, options):
    config = OptimizeConfig(train="/d", preset="quick")
    assert stage_of(spec) == RecipeStage(spec, "prune", PruneConfig(
        **options, data=task_data(config, PLAN, config.setting("recover_samples")), distill=True,
        recover=train_config(config, RECOVER_LR), importance_samples=config.setting("importance_samples")),
        "finetune")


def test_a_hidden_width_that_splits_a_head_is_refused_before_anything_runs(tmp_path, tiny_artifact, tiny_data):
    config = OptimizeConfig(train=str(tiny_data), start_from=str(tiny_artifact), candidates=("hidden12:fp32",),
                            preset="quick", batch_size=16, max_length=32)
    with pytest.raises(BertcError, match="hidden12:fp32: hidden12 is not a multiple of the model's head size 8"):
        optimize(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_optimize_builds_a_narrower_model_and_fewer_heads_in_the_last_layer(tmp_path, tiny_artifact, tiny_data):
    """Needs `bertc prune --hidden` and `--heads-per-layer` (issue 13)."""
    out = tmp_path / "run"
    config = OptimizeConfig(train=str(tiny_data), start_from=str(tiny_artifact), preset="quick",
                            candidates=("hidden16:fp32", "heads2last1:fp32"), batch_size=16, max_length=32,
                            recover_samples=64, importance_samples=32, bench_runs=10, max_accuracy_drop=100.0,
                            exhaustive=True)
    summary = optimize(config, out)
    state = json.loads((out / "optimize.json").read_text())
    searched = {c["name"]: c for c in state["candidates"]}
    assert set(searched) == {"base-int8-dynamic", "hidden16-fp32", "heads2last1-fp32"}
    assert all(c["status"] == "built" for c in searched.values()), searched
    for name in ("hidden16", "hidden16-onnx", "heads2last1", "heads2last1-onnx"):
        assert is_artifact(out / "stages" / name) and state["nodes"][name]["status"] == "built"
    assert json.loads((out / "stages" / "hidden16" / "config.json").read_text())["hidden_size"] == 16
    assert read_manifest(out / "stages" / "hidden16")["config"]["hidden"] == 16
    assert read_manifest(out / "stages" / "heads2last1")["model"]["heads_per_layer"] == [4, 2]
    assert {"hidden16-onnx", "heads2last1-onnx"} <= {row["name"] for row in summary["rows"]}  # benched
    recipe = (out / "recipe.toml").read_text()
    assert 'name = "hidden16"' in recipe and 'heads_per_layer = "-1:2"' in recipe
