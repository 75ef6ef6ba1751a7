"""The data options: what is refused, and which data an artifact falls back to."""

from __future__ import annotations

import pytest

from bertc.data.config import AUGMENT_STRATEGIES, AugmentConfig, Columns, DataConfig
from bertc.errors import BertcError


def test_defaults_are_valid():
    assert AugmentConfig().strategies == () and DataConfig().train is None
    assert set(AUGMENT_STRATEGIES) == {"delete", "swap"}


@pytest.mark.parametrize(("options", "message"), [
    ({"strategies": ("delete", "shout", "sing")}, "unknown --augment strategy shout, sing; choose from delete, swap"),
    ({"factor": -0.5}, "--augment-factor must be >= 0, got -0.5"),
    ({"probability": 0.0}, "--augment-probability must be in (0, 1), got 0.0"),
    ({"probability": 1.0}, "--augment-probability must be in (0, 1), got 1.0"),
])
def test_augment_ranges(options, message):
    with pytest.raises(BertcError) as err:
        AugmentConfig(**options)
    assert str(err.value) == message


def test_augment_reports_every_range_problem_at_once():
    with pytest.raises(BertcError) as err:
        AugmentConfig(strategies=("shout",), factor=-1.0, probability=2.0)
    assert str(err.value).count(";") >= 2 and "--augment-factor" in str(err.value) and \
        "--augment-probability" in str(err.value)


def test_augment_accepts_edge_values():
    assert AugmentConfig(strategies=("delete", "swap"), factor=0.0, probability=0.999).factor == 0.0


@pytest.mark.parametrize("name", ["max_train_samples", "max_eval_samples"])
def test_sample_limits_are_at_least_one(name):
    with pytest.raises(BertcError, match=f"^--{name.replace('_', '-')} must be at least 1, got 0$"):
        DataConfig(train="t.tsv", **{name: 0})
    assert getattr(DataConfig(train="t.tsv", **{name: 1}), name) == 1


def test_columns_bundle_the_column_options():
    config = DataConfig(train="t.tsv", text_column="review", text_pair_column="title", label_column="stars")
    assert config.columns == Columns(text="review", pair="title", label="stars")
    assert DataConfig().columns == Columns()


def test_given_data_is_used_as_is():
    config = DataConfig(train="mine.tsv")
    assert config.resolve({"task": {"train_data": "/other.tsv"}}) == (config, "--data mine.tsv")


def recorded_task(tmp_path, text_column: str, label_column: str) -> tuple:
    """An artifact's manifest recording training and evaluation files that exist, with their columns."""
    train, evaluation = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("x")
    evaluation.write_text("x")
    return train, evaluation, {"task": {"train_data": str(train), "eval_data": str(evaluation),
                                        "text_column": text_column, "text_pair_column": None,
                                        "label_column": label_column}}


def test_without_data_the_artifacts_recorded_data_and_columns_are_used(tmp_path):
    train, evaluation, manifest = recorded_task(tmp_path, "review", "stars")
    resolved, where = DataConfig(label_column="mine", max_train_samples=5).resolve(manifest)
    assert resolved == DataConfig(train=str(train), eval=str(evaluation), text_column="review",
                                  label_column="mine", max_train_samples=5)  # options given still win
    assert where == f"the artifact's training data ({train})"


def test_recorded_evaluation_data_that_is_gone_is_dropped(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("x")
    resolved, _ = DataConfig().resolve({"task": {"train_data": str(train), "eval_data": str(tmp_path / "gone")}})
    assert resolved.train == str(train) and resolved.eval is None


def test_no_data_anywhere_is_explained(tmp_path):
    assert DataConfig().resolve({}) == (None, "no labelled data: no --data given and none is recorded")
    gone = str(tmp_path / "gone.tsv")
    assert DataConfig().resolve({"task": {"train_data": gone}}) == (
        None, f"no labelled data: no --data given and the recorded training data {gone} is not on this machine")


def test_data_resolves_to_the_given_or_the_recorded_data(tmp_path):
    train, evaluation, manifest = recorded_task(tmp_path, "sentence", "label")
    given = DataConfig(train="other.tsv", max_train_samples=5)
    assert given.resolve(manifest) == (given, "--data other.tsv")

    data, source = DataConfig(label_column="y", max_train_samples=5, seed=3).resolve(manifest)
    assert source == f"the artifact's training data ({train})"
    assert data == DataConfig(train=str(train), eval=str(evaluation), text_column="sentence", label_column="y",
                              max_train_samples=5, seed=3)

    evaluation.unlink()
    assert DataConfig().resolve(manifest)[0].eval is None
