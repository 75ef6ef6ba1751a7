import math
import re
from typing import get_args

import pytest

from bertc.errors import BertcError
from bertc.training.config import Device, Optimizer, Precision, Schedule, TrainConfig


@pytest.mark.parametrize("options, message", [
    ({"optimizer": "lion"}, "--optimizer 'lion' is not one of adamw, adam, sgd, adafactor"),
    ({"schedule": "foo"}, "--schedule 'foo' is not one of linear, cosine, constant, polynomial, exponential"),
    ({"precision": "int8"}, "--precision 'int8' is not one of fp32, bf16, fp16"),
    ({"device": "tpu"}, "--device 'tpu' is not one of auto, cpu, cuda"),
    ({"lr": math.nan}, "--lr must be a finite number, got nan"),
    ({"warmup": math.inf}, "--warmup must be a finite number, got inf"),
    ({"batch_size": "sixteen"}, "--batch-size must be a whole number, got 'sixteen'"),
    ({"epochs": True}, "--epochs must be a number, got True"),
    ({"max_steps": 2.5}, "--max-steps must be a whole number, got 2.5"),
    ({"group_by_length": "yes"}, "--group-by-length must be true or false, got 'yes'"),
    ({"optimizer": "lion", "lr": math.nan}, "--optimizer 'lion' is not one of adamw, adam, sgd, adafactor; "
                                            "--lr must be a finite number, got nan"),
])
def test_wrong_types_and_choices_are_refused_naming_the_flag(options, message):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        TrainConfig(**options)


def test_whole_numbers_are_numbers_too():
    assert TrainConfig(lr=1, epochs=2).lr == 1


def test_choice_types_stay_importable():
    assert get_args(Optimizer) == ("adamw", "adam", "sgd", "adafactor")
    assert "cosine" in get_args(Schedule) and "bf16" in get_args(Precision) and "cuda" in get_args(Device)
