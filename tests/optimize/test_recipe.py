"""Recipes: the TOML writer, config round trips for every stage, and errors in hand-written recipes."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.bench.config import BenchConfig
from bertc.cli import app
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.data.config import AugmentConfig, DataConfig
from bertc.errors import BertcError
from bertc.export.config import DynamicQuantConfig, ExportConfig, Fp16Config, QuantizeConfig, StaticQuantConfig
from bertc.finetune.config import FinetuneConfig
from bertc.optimize.config import SelectConfig
from bertc.optimize.recipe import (
    STAGES,
    Recipe,
    RecipeStage,
    config_from_dict,
    config_to_dict,
    read_recipe,
    run_stage,
    write_recipe,
)
from bertc.optimize.toml_io import dumps, loads
from bertc.training.config import TrainConfig
from bertc.training.workdir import work_dir_for

CONFIGS = [
    FinetuneConfig(data=DataConfig(train="/d/train.tsv", eval="/d/validation.tsv", max_eval_samples=500,
                                   augment=AugmentConfig(strategies=("delete", "swap"), factor=0.5)),
                   train=TrainConfig(lr=8e-5, epochs=1, max_steps=3)),
    PruneConfig(heads=8, data=DataConfig(train="/d/train.tsv", max_train_samples=2000), distill=True,
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
    stages = [RecipeStage("finetune", "finetune", CONFIGS[0], "/models/minilm"),
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
    written = loads(path.read_text())["stages"][0]
    assert written["input"] == "/models/minilm" and "model" not in written["config"]  # the model is the input


def test_every_stage_runs_through_one_table_with_the_stage_signature():
    for kind, (config_class, stage) in STAGES.items():
        assert config_class.__name__.lower().startswith(kind)
        assert list(inspect.signature(stage).parameters)[:3] == ["src", "config", "out"], kind
        assert inspect.signature(stage).parameters["resume"].kind is inspect.Parameter.KEYWORD_ONLY, kind


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
    stages = tmp_path / "stages"
    work_dir_for(stages / "heads2").mkdir(parents=True)
    stage = RecipeStage("heads2", "prune", PruneConfig(heads=2, importance="magnitude"), str(tiny_artifact))
    out = run_stage(stage, stages, {}, resume=True)
    assert read_manifest(out)["model"]["heads_per_layer"] == [2, 2]


OLD_FINETUNE = ('[[stages]]\nname = "finetune"\nkind = "finetune"\n{input}[stages.config]\nmodel = "{model}"\n'
                '[stages.config.data]\ntrain = "{data}"\nmax_train_samples = 32\n[stages.config.train]\n'
                'max_steps = 2\nbatch_size = 16\nmax_length = 32\ndevice = "cpu"\nlogging_steps = 1\n'
                '[bench]\ndata = "{data}"\n')


def test_a_recipe_of_the_previous_version_with_the_model_in_the_finetune_config_still_runs(tmp_path, tiny_bert_dir,
                                                                                        tiny_data):
    """bertc optimize used to write the starting model as [stages.config] model; it is now the stage's input."""
    path = tmp_path / "recipe.toml"
    path.write_text(HEAD + OLD_FINETUNE.format(input="", model=tiny_bert_dir, data=tiny_data / "train.tsv"))
    [stage] = read_recipe(path).stages
    assert (stage.kind, stage.input) == ("finetune", str(tiny_bert_dir))
    assert stage.config == FinetuneConfig(data=DataConfig(train=str(tiny_data / "train.tsv"), max_train_samples=32),
                                          train=TrainConfig(max_steps=2, batch_size=16, max_length=32, device="cpu",
                                                            logging_steps=1))
    out = run_stage(stage, tmp_path / "stages", {}, resume=False)
    manifest = read_manifest(out)
    assert manifest["stage"] == "finetune" and manifest["model"]["kind"] == "pytorch"
    assert manifest["model"]["num_layers"] == 2  # the tiny model, not the embedded MiniLM (6 layers)


def test_an_old_recipe_whose_input_and_config_model_disagree_is_refused(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(HEAD + OLD_FINETUNE.format(input='input = "/models/a"\n', model="/models/b", data="/d/t.tsv"))
    with pytest.raises(BertcError, match="input '/models/a' and config.model '/models/b' disagree"):
        read_recipe(path)


@pytest.mark.parametrize("option, message", [
    ('optimizer = "lion"', "--optimizer 'lion' is not one of adamw, adam, sgd, adafactor"),
    ('schedule = "foo"', "--schedule 'foo' is not one of linear"),
])
def test_a_recipe_with_an_unknown_choice_is_refused_before_anything_runs(tmp_path, tiny_artifact, option, message):
    path = tmp_path / "recipe.toml"
    path.write_text(HEAD.replace("/runs/finetuned", str(tiny_artifact)) +
                    f'[[stages]]\nname = "layers1"\nkind = "distill"\ninput = "{tiny_artifact}"\n'
                    f'[stages.config]\nstudent_layers = 1\n[stages.config.train]\n{option}\n')
    with pytest.raises(BertcError, match=message):
        read_recipe(path)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.toml"]  # no output, no work directory
