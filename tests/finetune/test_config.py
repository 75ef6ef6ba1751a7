import math
import re

import pytest

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
