"""The selection slice is held out: no stage `bertc optimize` builds trains, distills or calibrates on its rows,
or picks a checkpoint or a search trial by them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from bertc.data.load import TextDataset, read_dataset
from bertc.errors import BertcError
from bertc.optimize import plan as plan_module
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.plan import length_mismatch, plan_data
from bertc.optimize.search import parse_candidate
from bertc.optimize.stages import compression_stage, deploy_stages, finetune_stage, openvino_stages


def tsv(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{i % 2}\n" for i, text in enumerate(texts)))
    return path


@pytest.fixture
def splits(tmp_path) -> Path:
    tsv(tmp_path / "data" / "train.tsv", [f"training sentence {i}" for i in range(40)])
    tsv(tmp_path / "data" / "validation.tsv", [f"validation sentence {i}" for i in range(20)])
    tsv(tmp_path / "data" / "test.tsv", [f"test sentence {i}" for i in range(10)])
    return tmp_path / "data"


def training_data_of(config: OptimizeConfig, plan) -> dict[str, tuple[str, int | None]]:
    """Every file (and row limit) a stage of the search learns from: fine-tuning, distillation, pruning's recovery
    and importance, and int8 calibration in ONNX Runtime and OpenVINO."""
    candidate = parse_candidate("layers1+ffn50:int8-static", "cpu")
    stages = [finetune_stage(config, plan)]
    stages += [compression_stage(config, plan, node, step, "finetune")
               for node, step in zip(candidate.chain(), candidate.steps)]
    used = {stage.name: (stage.config.data.train, stage.config.data.max_train_samples) for stage in stages}
    for stage in stages:  # their checkpoints and search trials are chosen on a split of their own training rows
        assert stage.config.data.eval is None and 0 < stage.config.data.val_fraction < 1
    _, static = deploy_stages(config, plan, candidate, candidate.node)
    nncf = openvino_stages(config, plan, candidate, candidate.node, bf16=False)[1]
    used.update({stage.name: (stage.config.method.calibration_data, None) for stage in (static, nncf)})
    return used


def test_no_stage_learns_from_a_row_of_the_selection_slice(splits):
    config = OptimizeConfig(train=str(splits), preset="quick")
    plan, sample = plan_data(config)
    selection = set(sample.texts)
    assert len(selection) == plan.selection_rows == 20 and plan.selection_in_train == 0
    used = training_data_of(config, plan)
    assert set(used) == {"finetune", "layers1", "layers1+ffn50", "layers1+ffn50-int8-static",
                         "layers1+ffn50-openvino-int8"}
    for stage, (path, limit) in used.items():
        assert Path(path).resolve() != Path(plan.selection).resolve(), stage
        rows = read_dataset(path, plan.columns, split="train").head(limit).texts
        assert rows and not selection & set(rows), f"{stage} learns from rows of the selection slice"


def test_the_training_file_is_refused_as_selection_or_test_data(splits):
    for flag in ("eval", "test"):
        files = {"eval": str(splits / "validation.tsv"), flag: str(splits / "train.tsv")}
        config = OptimizeConfig(train=str(splits / "train.tsv"), **files)
        with pytest.raises(BertcError, match=rf"^--{flag} .*train.tsv is the training file; the rows that choose "
                                             "and score the models must be held out"):
            plan_data(config)


def test_selection_rows_that_also_appear_in_the_training_file_are_counted_and_warned_about(splits, monkeypatch):
    train = [f"training sentence {i}" for i in range(40)] + ["validation  sentence 3", "validation sentence 7"]
    tsv(splits / "train.tsv", train)  # two selection rows, one with other whitespace, are training rows too
    out = io.StringIO()
    monkeypatch.setattr(plan_module, "console", Console(file=out, width=300, color_system=None))
    plan, _ = plan_data(OptimizeConfig(train=str(splits), preset="quick"))
    assert plan.selection_in_train == 2
    assert "warning: 2 of the 20 selection rows of" in out.getvalue() and "not held out" in out.getvalue()
    plan, _ = plan_data(OptimizeConfig(train=str(splits), preset="quick", selection_samples=3))
    assert plan.selection_in_train == 0  # only the rows of the slice count


def test_a_selection_slice_of_much_shorter_texts_than_the_test_data_is_warned_about(splits, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(plan_module, "console", Console(file=out, width=300, color_system=None))
    plan, _ = plan_data(OptimizeConfig(train=str(splits), preset="quick"))
    assert "median" not in out.getvalue() and plan.unlike_test is None  # 3 words each: alike
    tsv(splits / "test.tsv", [f"a whole review sentence number {i} that runs on for a good many more words" for i in
                              range(10)])
    plan, _ = plan_data(OptimizeConfig(train=str(splits), preset="quick"))
    assert plan.unlike_test.startswith("warning: the selection rows are a median 3 words long, the test rows 15: "
                                       "models ranked on") and plan.unlike_test in out.getvalue()


def test_text_length_mismatch_needs_twice_the_length_and_five_words_and_counts_both_texts_of_a_pair():
    def data(words: list[int], pair_words: int | None = None) -> TextDataset:
        return TextDataset(texts=["w " * n for n in words], labels=[0] * len(words),
                           pairs=None if pair_words is None else ["p " * pair_words] * len(words))
    assert length_mismatch(data([2, 3, 4]), data([8, 9, 30])) == \
        "the selection rows are a median 3 words long, the test rows 9"
    assert length_mismatch(data([20, 20]), data([9])) == \
        "the selection rows are a median 20 words long, the test rows 9"
    assert length_mismatch(data([3]), data([7])) is None  # over twice as long, but only 4 words apart
    assert length_mismatch(data([10]), data([19])) is None  # 9 words apart, but under twice as long
    assert length_mismatch(data([3], pair_words=6), data([9])) is None  # the pair's words count: 9 against 9
    assert length_mismatch(data([]), data([9])) is None
