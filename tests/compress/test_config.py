import math
import re
from pathlib import Path

import pytest

from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.data.config import DataConfig
from bertc.errors import BertcError
from tests.conftest import quick_train_config


@pytest.mark.parametrize("options, message", [
    ({"heads": 2, "layer_strategy": "random"}, "--layer-strategy 'random' is not one of importance, top, alternate"),
    ({"heads": 2, "importance": "fisher"}, "--importance 'fisher' is not one of auto, gradient, activation, magnitude"),
    ({"heads": "2"}, "--heads must be a whole number, got '2'"),
    ({"ffn": math.nan}, "--ffn must be a finite number, got nan"),
    ({"heads": 2, "iterative": 1.5}, "--iterative must be a whole number, got 1.5"),
    ({"drop_layers": (0, "one")}, "--drop-layers has an entry that must be a whole number, got 'one'"),
    ({"heads": 2, "distill": "yes"}, "--distill must be true or false, got 'yes'"),
    ({"heads": 2, "data": "train.tsv"}, "--data must be a DataConfig, got str"),
    ({"heads": 2, "recover": {"lr": 1e-4}}, "--recover must be a TrainConfig, got dict"),
])
def test_prune_config_refuses_wrong_types_and_choices(options, message):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        PruneConfig(**options)


@pytest.mark.parametrize("options, message", [
    ({"student_layers": "3"}, "--student-layers must be a whole number, got '3'"),
    ({"layer_map": (0, 1.5)}, "--layer-map has an entry that must be a whole number, got 1.5"),
    ({"student_layers": 2, "student": 3}, "--student must be text, got 3"),
    ({"student_layers": 2, "train": {"lr": 1.0}}, "--train must be a TrainConfig, got dict"),
    ({"student_layers": 2, "loss": None}, "--loss must be a DistillLoss, got NoneType"),
])
def test_distill_config_refuses_wrong_types(options, message):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        DistillConfig(**options)


@pytest.mark.parametrize("options, message", [
    ({"temperature": math.inf}, "--temperature must be a finite number, got inf"),
    ({"soft_weight": "0.5"}, "--soft-weight must be a number, got '0.5'"),
    ({"hidden_weight": math.nan, "attention_weight": None},
     "--hidden-weight must be a finite number, got nan; --attention-weight must be a number, got None"),
    ({"hard_weight": -1.0}, "--hard-weight must be >= 0, got -1.0"),
])
def test_distill_loss_refuses_wrong_values(options, message):
    with pytest.raises(BertcError, match=f"^{re.escape(message)}$"):
        DistillLoss(**options)


def test_configs_take_data_without_training_data():
    assert PruneConfig(heads=2).data == DataConfig()
    assert DistillConfig(student_layers=2, data=DataConfig(eval="v.tsv")).data.train is None
    assert PruneConfig(heads=2, recover=quick_train_config()).recover.epochs == 1


def test_data_resolves_to_none_with_a_reason(tmp_path):
    assert DataConfig().resolve({"task": {}}) == (None, "no labelled data: no --data given and none is recorded")
    gone = str(Path(tmp_path / "gone.tsv"))
    data, why = DataConfig().resolve({"task": {"train_data": gone}})
    assert data is None and why == f"no labelled data: no --data given and the recorded training data {gone} is " \
                                   "not on this machine"
