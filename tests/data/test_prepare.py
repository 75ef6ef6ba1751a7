"""Preparing training and evaluation data: where evaluation data comes from, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertc.data.config import AugmentConfig, Columns, DataConfig
from bertc.data.prepare import check_model_labels, prepare_data, read_eval_data, task_record
from bertc.errors import BertcError
from bertc.inference.evaluation import evaluate


def write(path: Path, rows: list[tuple[str, str]], header: str = "sentence\tlabel") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(f"{text}\t{label}" for text, label in rows)]) + "\n")
    return path


def rows(n: int, labels=("0", "1")) -> list[tuple[str, str]]:
    return [(f"text number {i} here", labels[i % len(labels)]) for i in range(n)]


def test_a_directory_with_a_validation_file_evaluates_on_it(tmp_path):
    write(tmp_path / "train.tsv", rows(20, ("2", "10", "1")))
    write(tmp_path / "dev.tsv", [("a dev text", "1"), ("  another   dev text ", "10"), ("", "2")])
    data = prepare_data(DataConfig(train=str(tmp_path)))
    assert data.labels == [1, 2, 10]  # integer labels in numeric order
    assert len(data.train) == 20 and data.eval.texts == ["a dev text", "another dev text"]  # cleaned too
    assert data.report["eval_source"] == str(tmp_path / "dev.tsv")
    assert data.report["train_source"] == str(tmp_path / "train.tsv")
    assert data.report["eval_cleaning"].empty_text == 1
    assert (data.report["train_examples"], data.report["eval_examples"]) == (20, 2)
    assert data.report["columns"] == {"text": "sentence", "pair": None, "label": "label"}


def test_without_evaluation_data_a_stratified_split_is_held_out(tmp_path):
    train = write(tmp_path / "data.tsv", rows(40, ("neg", "pos")))
    data = prepare_data(DataConfig(train=str(train), val_fraction=0.25, seed=3))
    assert data.labels == ["neg", "pos"]
    assert (len(data.train), len(data.eval)) == (30, 10)
    assert sorted(data.eval.labels) == ["neg"] * 5 + ["pos"] * 5
    assert not set(data.train.texts) & set(data.eval.texts)
    assert data.report["eval_source"] == "25% stratified split of the training data"
    again = prepare_data(DataConfig(train=str(train), val_fraction=0.25, seed=3))
    assert again.eval.texts == data.eval.texts  # seeded


def test_an_explicit_eval_file_wins_and_sample_limits_apply_after_cleaning(tmp_path):
    train = write(tmp_path / "train.tsv", [("", "0"), *rows(30)])
    evaluation = write(tmp_path / "other.tsv", rows(12))
    write(tmp_path / "validation.tsv", [("never read", "0")])
    data = prepare_data(DataConfig(train=str(train), eval=str(evaluation), max_train_samples=7,
                                   max_eval_samples=5))
    assert data.train.texts == [f"text number {i} here" for i in range(7)]
    assert len(data.eval) == 5 and data.report["eval_source"] == str(evaluation)
    assert data.report["train_cleaning"].rows_in == 31 and data.report["train_cleaning"].rows_out == 30


def test_no_cleaning_keeps_rows_as_read(tmp_path):
    train = write(tmp_path / "train.tsv", [*rows(10), ("text number 0 here", "0")])
    evaluation = write(tmp_path / "eval.tsv", rows(4))
    data = prepare_data(DataConfig(train=str(train), eval=str(evaluation), clean=False))
    assert len(data.train) == 11  # the duplicate stays
    assert "train_cleaning" not in data.report and "eval_cleaning" not in data.report


def test_augmentation_adds_copies_to_the_training_data_only(tmp_path):
    train = write(tmp_path / "train.tsv", rows(10))
    evaluation = write(tmp_path / "eval.tsv", rows(4))
    config = DataConfig(train=str(train), eval=str(evaluation),
                        augment=AugmentConfig(strategies=("swap",), factor=2.0, seed=1))
    data = prepare_data(config)
    assert data.report["augmented_examples"] == len(data.train) - 10 > 0
    assert data.train.texts[:10] == [text for text, _ in rows(10)]
    assert len(data.eval) == 4 and data.report["train_examples"] == len(data.train)


def test_a_single_class_is_refused(tmp_path):
    train = write(tmp_path / "train.tsv", rows(10, ("pos",)))
    with pytest.raises(BertcError, match=r"train.tsv has a single class \('pos'\); a classifier needs at least two"):
        prepare_data(DataConfig(train=str(train)))


def test_training_data_with_nothing_usable_is_refused(tmp_path):
    train = write(tmp_path / "train.tsv", [("", "0"), ("   ", "1")])
    with pytest.raises(BertcError, match=r"no usable rows after cleaning .*--text-column/--label-column"):
        prepare_data(DataConfig(train=str(train)))


def test_evaluation_labels_never_seen_in_training_are_refused(tmp_path):
    train = write(tmp_path / "train.tsv", rows(10, ("a", "b")))
    evaluation = write(tmp_path / "eval.tsv", [("x y", "a"), ("y z", "c"), ("z w", "d")])
    with pytest.raises(BertcError, match=r"evaluation data has labels never seen in training \(c, d\)"):
        prepare_data(DataConfig(train=str(train), eval=str(evaluation)))


def test_read_eval_data_cleans_limits_and_reports(tmp_path):
    path = write(tmp_path / "eval.tsv", [("  a  b ", "0"), ("a b", "0"), ("", "1"), ("c", "1"), ("d", "1")])
    data, report = read_eval_data(str(path), Columns(), max_samples=3)
    assert data.texts == ["a b", "a b", "c"]  # scored as given: the duplicate stays
    assert (report.rows_in, report.empty_text, report.duplicates, report.rows_out) == (5, 1, 0, 4)
    deduplicated, report = read_eval_data(str(path), Columns(), max_samples=2, drop_duplicates=True)  # when asked
    assert deduplicated.texts == ["a b", "c"] and report.duplicates == 1
    raw, none = read_eval_data(str(path), Columns(), do_clean=False)
    assert len(raw) == 5 and none is None


def test_evaluation_data_keeps_duplicate_rows_and_training_data_drops_them(tmp_path):
    train = write(tmp_path / "train.tsv", [*rows(10), ("text number 0 here", "0")])
    evaluation = write(tmp_path / "eval.tsv", [("same text", "0"), ("same   text", "0"), ("other", "1"),
                                               ("no label", ""), ("other", "1")])
    data = prepare_data(DataConfig(train=str(train), eval=str(evaluation)))
    assert len(data.train) == 10 and data.report["train_cleaning"].duplicates == 1
    assert data.eval.texts == ["same text", "same text", "other", "other"]
    cleaning = data.report["eval_cleaning"]
    assert (cleaning.missing_label, cleaning.duplicates, cleaning.rows_out) == (1, 0, 4)
    assert data.report["eval_examples"] == 4


def test_an_evaluation_file_with_duplicate_rows_is_scored_on_all_rows(tmp_path, tiny_artifact, tiny_data):
    rows_ = (tiny_data / "test.tsv").read_text().splitlines()
    doubled = tmp_path / "doubled.tsv"
    doubled.write_text("\n".join([rows_[0], *rows_[1:], *rows_[1:11]]) + "\n")  # the first 10 rows twice
    single = evaluate(tiny_artifact, str(tiny_data / "test.tsv"))
    report = evaluate(tiny_artifact, str(doubled))
    assert single["samples"] == len(rows_) - 1 and report["samples"] == single["samples"] + 10
    assert sum(map(sum, report["confusion_matrix"])) == report["samples"]


def test_read_eval_data_takes_the_validation_split_of_a_directory_and_named_columns(tmp_path):
    write(tmp_path / "train.tsv", rows(4))
    write(tmp_path / "valid.tsv", [("hello", "x")], header="review\tclass")
    data, _ = read_eval_data(str(tmp_path), Columns(text="review", label="class"))
    assert data.texts == ["hello"] and data.labels == ["x"]


def test_read_eval_data_refuses_an_empty_file(tmp_path):
    path = write(tmp_path / "eval.tsv", [("", "0")])
    with pytest.raises(BertcError, match=r"eval.tsv has no usable rows after cleaning"):
        read_eval_data(str(path), Columns())


def test_no_training_data_is_refused():
    with pytest.raises(BertcError, match=r"^no training data given; pass --train"):
        prepare_data(DataConfig())


def test_check_model_labels_names_labels_the_model_does_not_predict(tmp_path):
    train = write(tmp_path / "train.tsv", rows(10, ("a", "b")))
    evaluation = write(tmp_path / "eval.tsv", [("x", "a"), ("y", "b")])
    data = prepare_data(DataConfig(train=str(train), eval=str(evaluation)))
    check_model_labels(data, ["a", "b", "c"])
    with pytest.raises(BertcError, match=r"train.tsv has labels the model does not know \(b\); the model predicts "
                                         r"a, c\. Pass --data of the same task"):
        check_model_labels(data, ["a", "c"])


def test_check_model_labels_gives_numeric_data_the_model_labels_read_as_text(tmp_path):
    train = write(tmp_path / "train.tsv", rows(10))
    evaluation = write(tmp_path / "eval.tsv", [("x", "1"), ("y", "0")])
    data = prepare_data(DataConfig(train=str(train), eval=str(evaluation)))
    assert data.labels == [0, 1] and data.eval.labels == [1, 0]
    model_labels = ["0", "1", "maybe"]  # a model trained on text labels
    check_model_labels(data, model_labels)
    label2id = {label: i for i, label in enumerate(model_labels)}
    assert [label2id[label] for label in data.eval.labels] == [1, 0]  # a lookup by value finds them
    assert [label2id[label] for label in data.train.labels] == [0, 1] * 5
    assert data.labels == ["0", "1"]


def test_task_record_holds_labels_columns_and_absolute_data_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "train.tsv", rows(10))
    write(tmp_path / "eval.tsv", rows(4))
    config = DataConfig(train="train.tsv", eval="eval.tsv")
    data = prepare_data(config)
    record = task_record(config, data, data.labels, max_length=64)
    assert record == {"labels": [0, 1], "text_column": "sentence", "text_pair_column": None, "label_column": "label",
                      "max_length": 64, "train_data": str(tmp_path / "train.tsv"),
                      "eval_data": str(tmp_path / "eval.tsv"), "data": data.report}
    hub = task_record(DataConfig(train="glue/sst2"), data, data.labels, 64)
    assert hub["train_data"] == "glue/sst2" and hub["eval_data"] is None  # not a path: kept as given
