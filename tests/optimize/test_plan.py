"""What `bertc optimize` checks before any long work (the data plan) and how it measures the machine's speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from bertc.artifact import write_manifest
from bertc.data.config import Columns
from bertc.errors import BertcError
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.plan import check_cuda, measure, plan_data
from bertc.optimize.search import Shape


def tsv(path: Path, rows: int, labels=(0, 1)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{path.stem} sentence {i}\t{labels[i % len(labels)]}\n"
                                                  for i in range(rows)))
    return path


@pytest.fixture
def splits(tmp_path) -> Path:
    tsv(tmp_path / "data" / "train.tsv", 30)
    tsv(tmp_path / "data" / "dev.tsv", 12)
    tsv(tmp_path / "data" / "test.tsv", 10)
    return tmp_path / "data"


def test_a_directory_of_splits_gives_train_selection_and_test(splits):
    plan, sample = plan_data(OptimizeConfig(train=str(splits), selection_samples=5, test_samples=4))
    assert plan.train == str((splits / "train.tsv").resolve())
    assert plan.selection == str((splits / "dev.tsv").resolve()) and plan.test == str((splits / "test.tsv").resolve())
    assert (plan.train_rows, plan.selection_rows, plan.test_rows) == (30, 5, 4)
    assert plan.labels == ["0", "1"] and plan.columns == Columns()
    assert sample.texts == [f"dev sentence {i}" for i in range(5)]


def test_given_files_beat_the_directorys_and_the_preset_caps_the_selection(splits, tmp_path):
    other = tsv(tmp_path / "other" / "eval.tsv", 8)
    plan, sample = plan_data(OptimizeConfig(train=str(splits / "train.tsv"), eval=str(other), preset="quick"))
    assert plan.selection == str(other.resolve()) and plan.test is None and plan.test_rows == 0
    assert plan.selection_rows == len(sample) == 8  # fewer rows than the preset's 500


def test_no_selection_data_is_refused(splits):
    with pytest.raises(BertcError, match=r"^no selection data: pass --eval PATH .*train.tsv has none\)$"):
        plan_data(OptimizeConfig(train=str(splits / "train.tsv")))


def test_files_must_exist_locally(splits):
    with pytest.raises(BertcError, match=r"^--eval .*missing.tsv is not a data file; bertc optimize needs local"):
        plan_data(OptimizeConfig(train=str(splits), eval=str(splits / "missing.tsv")))
    with pytest.raises(BertcError, match=r"^--train sst2 is not a data file"):
        plan_data(OptimizeConfig(train="sst2", eval=str(splits / "dev.tsv")))


def test_label_sets_must_agree(splits, tmp_path):
    three = tsv(tmp_path / "three.tsv", 9, labels=(0, 1, 2))
    with pytest.raises(BertcError) as err:
        plan_data(OptimizeConfig(train=str(splits), test=str(three)))
    assert str(err.value) == (f"the data sets have different label sets: --train {splits / 'train.tsv'} has labels "
                              f"['0', '1'] but --test {three} has labels ['0', '1', '2']. Pass train and eval data of "
                              "one task")


def test_unlabelled_data_is_refused(splits, tmp_path):
    blank = tmp_path / "blank.tsv"
    blank.write_text("sentence\tlabel\na\t\nb\t\n")
    with pytest.raises(BertcError, match="--eval .*blank.tsv has no labelled rows"):
        plan_data(OptimizeConfig(train=str(splits), eval=str(blank)))


def from_artifact(directory: Path, labels: list, **task) -> Path:
    directory.mkdir()
    write_manifest(directory, stage="finetune", config={}, parent=None, model={"kind": "pytorch"},
                   task={"labels": labels, **task})
    return directory


def test_from_an_artifact_its_columns_are_used_and_its_labels_must_match(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.tsv").write_text("id\tbody\tsentence\ty\n" + "".join(
        f"{i}\tbody {i}\tsentence {i}\t{i % 2}\n" for i in range(6)))
    (tmp_path / "d" / "validation.tsv").write_text("id\tbody\tsentence\ty\n1\tbody a\tsentence a\t0\n"
                                                   "2\tbody b\tsentence b\t1\n")
    artifact = from_artifact(tmp_path / "a", ["0", "1"], text_column="body", label_column="y")
    plan, sample = plan_data(OptimizeConfig(train=str(tmp_path / "d"), start_from=str(artifact)))
    assert plan.columns == Columns("body", None, "y") and sample.texts == ["body a", "body b"]
    other = from_artifact(tmp_path / "b", ["neg", "pos"], text_column="body", label_column="y")
    with pytest.raises(BertcError, match=r"--from .*b predicts labels \['neg', 'pos'\] but the training data has "
                                         r"\['0', '1'\]; start from an artifact of this task"):
        plan_data(OptimizeConfig(train=str(tmp_path / "d"), start_from=str(other)))


def test_measure_reads_the_models_shape_and_times_real_batches(splits, tiny_bert_dir):
    config = OptimizeConfig(train=str(splits), model=str(tiny_bert_dir), batch_size=4, max_length=16)
    plan, sample = plan_data(config)
    probe = measure(config, plan, sample)
    assert probe.shape == Shape(layers=2, heads=4, ffn=64, hidden=32, head_dim=8)
    assert probe.train_rate > 0 and probe.infer_rate > 0
    # the mean length counts real tokens only (no padding)
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(tiny_bert_dir)(
        sample.texts, truncation=True, max_length=16)["input_ids"]]
    assert probe.seq_len == max(2, round(sum(lengths) / len(lengths)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_target_without_a_gpu_is_refused():
    with pytest.raises(BertcError, match="^--target cuda needs a CUDA GPU for training and measuring"):
        check_cuda()
