"""Per-family fixtures: a tiny pretrained encoder of each family and a bertc fine-tune of it (seconds each)."""

from __future__ import annotations

import pytest

from bertc.data.config import DataConfig
from bertc.finetune.config import FinetuneConfig
from bertc.finetune.finetune import finetune
from tests.conftest import quick_train_config
from tests.families.tiny import FAMILY_NAMES, make_family_dir


@pytest.fixture(scope="session", params=FAMILY_NAMES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def family_base_dirs(tmp_path_factory) -> dict:
    """name -> a saved base (headless) tiny encoder of that family, built on first use."""
    return {}


@pytest.fixture(scope="session")
def family_artifacts(tmp_path_factory) -> dict:
    return {}


@pytest.fixture(scope="session")
def family_base(family, family_base_dirs, tmp_path_factory):
    if family not in family_base_dirs:
        family_base_dirs[family] = make_family_dir(tmp_path_factory.mktemp(f"base-{family}"), family, classifier=False)
    return family_base_dirs[family]


@pytest.fixture(scope="session")
def family_artifact(family, family_base, family_artifacts, tiny_data, tmp_path_factory):
    """``bertc finetune`` of the family's tiny encoder on the tiny task."""
    if family not in family_artifacts:
        config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), train=quick_train_config(epochs=4, lr=2e-3))
        family_artifacts[family] = finetune(family_base, config, tmp_path_factory.mktemp(f"ft-{family}") / "model")
    return family_artifacts[family]
