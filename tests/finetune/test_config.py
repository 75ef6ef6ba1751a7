import math
import re

import pytest
from typer.testing import CliRunner

from bertc.cli import app
from bertc.data.config import AugmentConfig, DataConfig
from bertc.errors import BertcError
from bertc.finetune.config import FinetuneConfig
from bertc.training.config import TrainConfig


def refused(cls, message, **options):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        cls(**options)


def test_finetune_config_needs_training_data():
    refused(FinetuneConfig, "--train is required: fine-tuning needs labelled training data (a file, a directory of "
                            "splits or a Hub dataset id)")
    refused(FinetuneConfig, "--train is required: fine-tuning needs labelled training data (a file, a directory of "
                            "splits or a Hub dataset id)", data=DataConfig(eval="validation.tsv"))
    config = FinetuneConfig(data=DataConfig(train="train.tsv"))
    assert config.train == TrainConfig() and not config.trust_remote_code
    assert not hasattr(config, "model")  # the model to start from is the stage's src, not an option


@pytest.mark.parametrize("options, message", [
    ({"data": "train.tsv"}, "--data must be a DataConfig, got str"),
    ({"data": DataConfig(train="t.tsv"), "train": None}, "--train must be a TrainConfig, got NoneType"),
    ({"data": DataConfig(train="t.tsv"), "trust_remote_code": 1}, "--trust-remote-code must be true or false, got 1"),
])
def test_finetune_config_refuses_wrong_types(options, message):
    refused(FinetuneConfig, message, **options)


@pytest.mark.parametrize("options, message", [
    ({"train": 3}, "--train must be text, got 3"),
    ({"max_train_samples": "100"}, "--max-train-samples must be a whole number, got '100'"),
    ({"val_fraction": math.nan}, "--val-fraction must be a finite number, got nan"),
    ({"clean": "no"}, "--clean must be true or false, got 'no'"),
    ({"augment": ("delete",)}, "--augment must be a AugmentConfig, got tuple"),
    ({"max_eval_samples": 0}, "--max-eval-samples must be at least 1, got 0"),
])
def test_data_config_refuses_wrong_values(options, message):
    refused(DataConfig, message, **options)


@pytest.mark.parametrize("options, message", [
    ({"strategies": "delete"}, "--strategies must be a list, got 'delete'"),
    ({"factor": math.inf}, "--factor must be a finite number, got inf"),
    ({"probability": "0.1"}, "--probability must be a number, got '0.1'"),
    ({"strategies": ("synonym",)}, "unknown --augment strategy synonym; choose from delete, swap"),
    ({"factor": -1.0, "probability": 1.0},
     "--augment-factor must be >= 0, got -1.0; --augment-probability must be in (0, 1), got 1.0"),
])
def test_augment_config_refuses_wrong_values(options, message):
    refused(AugmentConfig, message, **options)


RECIPE = ('[recipe]\nformat = "bertc-recipe"\nversion = 1\nbaseline = "tuned"\ncandidates = []\n'
          '[[stages]]\nname = "tuned"\nkind = "finetune"\n[stages.config.data]\ntrain = "{data}"\n'
          '[stages.config.train]\n{options}\n')


@pytest.mark.parametrize("options, message", [
    ('schedule = "foo"', "--schedule 'foo' is not one of linear, cosine, constant, polynomial, exponential"),
    ('batch_size = "sixteen"', "--batch-size must be a whole number, got 'sixteen'"),
    ('lr = nan', "--lr must be a finite number, got nan"),
    ('schedule = "foo"\nbatch_size = "sixteen"',
     "--schedule 'foo' is not one of linear, cosine, constant, polynomial, exponential; "
     "--batch-size must be a whole number, got 'sixteen'"),
])
def test_a_recipe_finetune_stage_is_refused_in_one_line_before_anything_runs(tmp_path, options, message):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(data=tmp_path / "train.tsv", options=options))
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(message) and "Traceback" not in result.output, result.output
    assert "not supported between" not in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.toml"]  # no output, no work directory
