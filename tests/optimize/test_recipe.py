"""Recipes: the TOML writer, config round trips for every stage, and errors in hand-written recipes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bertc.bench.config import BenchConfig
from bertc.cli import app
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig, TaskData
from bertc.data.config import AugmentConfig, DataConfig
from bertc.errors import BertcError
from bertc.export.config import DynamicQuantConfig, ExportConfig, Fp16Config, QuantizeConfig, StaticQuantConfig
from bertc.finetune.config import FinetuneConfig
from bertc.optimize.config import SelectConfig
from bertc.optimize.recipe import (
    Recipe,
    RecipeStage,
    config_from_dict,
    config_to_dict,
    dumps,
    loads,
    read_recipe,
    write_recipe,
)
from bertc.training.config import TrainConfig

CONFIGS = [
    FinetuneConfig(data=DataConfig(train="/d/train.tsv", eval="/d/validation.tsv", max_eval_samples=500,
                                   augment=AugmentConfig(strategies=("delete", "swap"), factor=0.5)),
                   train=TrainConfig(lr=8e-5, epochs=1, max_steps=3), model="/models/minilm"),
    PruneConfig(heads=8, data=TaskData(train="/d/train.tsv", max_train_samples=2000), distill=True,
                recover=TrainConfig(lr=5e-5, epochs=1), distill_loss=DistillLoss(temperature=3.0)),
    PruneConfig(ffn=0.5, drop_layers=(1, 3)),
    DistillConfig(student_layers=3, loss=DistillLoss(hidden_weight=1.0, attention_weight=1.0)),
    ExportConfig(data="/d/validation.tsv", verify_samples=500, atol=2e-3),
    QuantizeConfig(method=DynamicQuantConfig(per_channel=True), max_accuracy_drop=0.75),
    QuantizeConfig(method=StaticQuantConfig(calibration="percentile", calibration_samples=64)),
    QuantizeConfig(method=Fp16Config(), device="cuda"),
    BenchConfig(data="/d/validation.tsv", batch_sizes=(1, 8), seq_lens=("real", 128), max_samples=500),
    SelectConfig(max_accuracy_drop=0.5, latency_budget_ms=3.0, test="/d/test.tsv"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_stage_config_survives_toml(config):
    text = dumps({"config": config_to_dict(config)})
    assert config_from_dict(type(config), loads(text)["config"], "test") == config


def test_toml_writer_escapes_and_nests():
    document = {"a": {"text": 'quote " back \\ tab \t newline \n é', "none": None, "inf": float("inf"),
                      "mixed": ["real", 128], "nested": {"deep": [[1, 2], [3]]}},
                "items": [{"name": "x", "sub": {"k": True}}, {"name": "y"}]}
    parsed = loads(dumps(document, ["a comment"]))
    assert parsed["a"]["text"] == document["a"]["text"] and "none" not in parsed["a"]
    assert parsed["a"]["inf"] == float("inf") and parsed["a"]["mixed"] == ["real", 128]
    assert parsed["a"]["nested"] == {"deep": [[1, 2], [3]]}
    assert parsed["items"] == [{"name": "x", "sub": {"k": True}}, {"name": "y"}]


def test_recipe_round_trip(tmp_path):
    stages = [RecipeStage("finetune", "finetune", CONFIGS[0]),
              RecipeStage("heads8", "prune", CONFIGS[1], "finetune"),
              RecipeStage("heads8-onnx", "export", CONFIGS[4], "heads8"),
              RecipeStage("heads8-int8-dynamic", "quantize", CONFIGS[5], "heads8-onnx")]
    recipe = Recipe(stages=stages, baseline="finetune", candidates=["heads8-int8-dynamic"], select=CONFIGS[-1],
                    bench=CONFIGS[-2], notes=["layers3: loses 2.1 points"])
    path = write_recipe(recipe, tmp_path / "recipe.toml", header=["hello"])
    assert path.read_text().startswith("# hello\n# not kept: layers3: loses 2.1 points\n")
    again = read_recipe(path)
    assert again.stages == stages and again.baseline == "finetune" and again.candidates == ["heads8-int8-dynamic"]
    assert again.select == recipe.select and again.bench == recipe.bench


HEAD = '[recipe]\nformat = "bertc-recipe"\nversion = 1\nbaseline = "/runs/finetuned"\ncandidates = []\n'


@pytest.mark.parametrize("body, message", [
    ("[[stages]]\nname = \"finetune\"\nkind = \"finetune\"\n[stages.config]\nwhatever = 1\n",
     "unknown option.*whatever"),
    ("[[stages]]\nname = \"finetune\"\nkind = \"train\"\n", "kind 'train' is not one of"),
    ("[[stages]]\nname = \"x\"\nkind = \"export\"\n", "needs input"),
    ("[[stages]]\nname = \"x\"\nkind = \"export\"\ninput = \"relative/dir\"\n", "neither an earlier stage"),
    ("[[stages]]\nname = \"finetune\"\nkind = \"quantize\"\ninput = \"/a\"\n[stages.config.method]\n"
     "method = \"int4\"\n", "method 'int4' is not one of"),
    ("[[stages]]\nname = \"finetune\"\nkind = \"prune\"\ninput = \"/a\"\n[stages.config]\nheads = 0\n",
     "--heads must be at least 1"),
    ("[select]\nmax_accuracy_drop = -1\n", "max-accuracy-drop must be at least 0"),
])
def test_bad_recipes_are_one_line_errors(tmp_path, body, message):
    path = tmp_path / "recipe.toml"
    path.write_text(HEAD + body)
    with pytest.raises(BertcError, match=message):
        read_recipe(path)


def test_cli_run_with_a_bad_recipe_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text("this is = not [toml")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    path.write_text('[recipe]\nformat = "something-else"\n')
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not a bertc recipe" in result.output


def test_resume_rebuilds_a_stage_killed_before_it_could_be_resumed(tmp_path, tiny_artifact):
    """A work dir without its resume marker (killed right after mkdir) is rebuilt, not 'nothing to resume'."""
    from bertc.artifact import read_manifest
    from bertc.optimize.recipe import run_stage
    from bertc.training.trainer import work_dir_for

    stages = tmp_path / "stages"
    work_dir_for(stages / "heads2").mkdir(parents=True)
    stage = RecipeStage("heads2", "prune", PruneConfig(heads=2, importance="magnitude"), str(tiny_artifact))
    out = run_stage(stage, stages, {}, resume=True)
    assert read_manifest(out)["model"]["heads_per_layer"] == [2, 2]
