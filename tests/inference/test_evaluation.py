"""Evaluation and prediction through the predictor registry, with a made-up predictor of known logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bertc.artifact import read_manifest, write_manifest
from bertc.data.config import Columns
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.inference import evaluation
from bertc.inference.registry import PREDICTOR_LOADERS
from bertc.jsonio import write_json


@dataclass
class KeywordPredictor:
    """Says "pos" (logits [0, 2]) when a text holds "good", else "neg" (logits [1, 0])."""

    labels: list
    seen: list | None = None

    def logits(self, texts, pairs=None):
        if self.seen is not None:
            self.seen.append((list(texts), pairs))
        return np.array([[0.0, 2.0] if "good" in text else [1.0, 0.0] for text in texts], dtype=np.float32)


def test_softmax_rows_sum_to_one_and_survive_huge_logits():
    probabilities = evaluation.softmax(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0], [-1000.0, 0.0]]))
    np.testing.assert_allclose(probabilities, [[0.25, 0.75], [0.5, 0.5], [0.0, 1.0]], atol=1e-12)
    assert np.isfinite(probabilities).all()


def test_predict_texts_names_the_label_and_each_probability_as_text():
    rows = evaluation.predict_texts(KeywordPredictor([0, 1]), ["a good film", "dull"])
    assert [row["label"] for row in rows] == [1, 0] and [row["text"] for row in rows] == ["a good film", "dull"]
    assert rows[0]["probabilities"] == pytest.approx({"0": 1 / (1 + np.e ** 2), "1": 1 / (1 + np.e ** -2)})
    assert sum(rows[1]["probabilities"].values()) == pytest.approx(1.0)


def test_score_dataset_reports_on_known_labels_and_refuses_unknown_ones():
    dataset = TextDataset(texts=["good", "good stuff", "bad", "good but bad"], labels=["pos", "pos", "neg", "neg"],
                          source="dev.tsv")
    report = evaluation.score_dataset(KeywordPredictor(["neg", "pos"]), dataset)
    assert report["accuracy"] == 0.75 and report["confusion_matrix"] == [[1, 1], [0, 2]]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    dataset.labels[2] = "neutral"
    with pytest.raises(BertcError, match=r"dev.tsv has labels the model does not know \(neutral\)"):
        evaluation.score_dataset(KeywordPredictor(["neg", "pos"]), dataset)


def test_task_columns_prefer_the_users_columns():
    manifest = {"task": {"text_column": "sentence", "text_pair_column": None, "label_column": "label"}}
    assert evaluation.task_columns(manifest) == Columns("sentence", None, "label")
    assert evaluation.task_columns(manifest, "review", "answer", None) == Columns("review", "answer", "label")
    assert evaluation.task_columns({}) == Columns()


@pytest.fixture
def keyword_artifact(tmp_path, monkeypatch):
    """An artifact of a made-up model kind whose registered loader returns a KeywordPredictor."""
    calls = []

    def load(path, manifest, device, batch_size):
        calls.append((path, device, batch_size))
        return KeywordPredictor(manifest["task"]["labels"], seen=calls)

    monkeypatch.setitem(PREDICTOR_LOADERS, "keyword", load)
    directory = tmp_path / "artifact"
    directory.mkdir()
    write_manifest(directory, stage="finetune", config={}, parent=None, model={"kind": "keyword"},
                   task={"labels": ["neg", "pos"], "text_column": "review", "label_column": "stars"})
    (tmp_path / "test.tsv").write_text("id\treview\tstars\tsentence\n1\tgood\tpos\tx\n2\tbad\tneg\tx\n"
                                       "3\tgood fun\tneg\tx\n4\tawful\tneg\tx\n")
    return directory, tmp_path / "test.tsv", calls


def test_evaluate_reads_the_artifacts_columns_and_runs_its_predictor(keyword_artifact):
    path, data, calls = keyword_artifact
    report = evaluation.evaluate(path, str(data), device="cuda", batch_size=8)
    assert report["accuracy"] == 0.75 and report["samples"] == 4
    assert report["artifact"] == str(path.absolute()) and report["data"].endswith("test.tsv")
    assert calls[0] == (path, "cuda", 8)
    assert calls[1] == (["good", "bad", "good fun", "awful"], None)  # the review column, not "sentence"


def test_evaluate_with_given_columns_and_a_row_limit(keyword_artifact):
    path, data, calls = keyword_artifact
    report = evaluation.evaluate(path, str(data), columns=Columns("review", None, "stars"), max_samples=2)
    assert report["samples"] == 2 and report["accuracy"] == 1.0


def test_evaluate_checks_its_options_before_loading_anything(tmp_path):
    nowhere = tmp_path / "not-even-an-artifact"
    with pytest.raises(BertcError, match=r"^--split 'dev' is not one of train, validation, test$"):
        evaluation.evaluate(nowhere, "d.tsv", split="dev")
    with pytest.raises(BertcError, match=r"^--device 'tpu' is not one of cpu, cuda; --batch-size must be a whole "
                                         r"number of at least 1, got 0; --max-samples must be a whole number of at "
                                         r"least 1, got 0$"):
        evaluation.evaluate(nowhere, "d.tsv", device="tpu", batch_size=0, max_samples=0)


def test_predict_needs_texts_and_one_pair_per_text_before_loading_anything(tmp_path):
    nowhere = tmp_path / "not-even-an-artifact"
    with pytest.raises(BertcError, match=r"^no texts to predict; pass a text or --data PATH$"):
        evaluation.predict(nowhere, [])
    with pytest.raises(BertcError, match=r"^2 texts but 1 second texts \(--pair\); give one --pair per text$"):
        evaluation.predict(nowhere, ["a", "b"], ["x"])


def test_predict_labels_every_text(keyword_artifact):
    path, _, calls = keyword_artifact
    rows = evaluation.predict(path, ["so good", "meh"], ["p1", "p2"], batch_size=4)
    assert [row["label"] for row in rows] == ["pos", "neg"]
    assert calls == [(path, "cpu", 4), (["so good", "meh"], ["p1", "p2"])]


def test_predict_refuses_a_pair_model_texts_alone_before_loading_it(keyword_artifact):
    path, _, calls = keyword_artifact
    manifest = read_manifest(path)
    manifest["task"]["text_pair_column"] = "answer"
    write_json(path / "bertc.json", manifest)
    with pytest.raises(BertcError, match=r"^this model reads sentence pairs; give --pair for each text or --data "
                                         r"with the pair column$"):
        evaluation.predict(path, ["so good"])
    assert calls == []
    assert [row["label"] for row in evaluation.predict(path, ["so good"], ["yes"])] == ["pos"]


PAIR_TASK = {"text_column": "question", "text_pair_column": "answer"}
SINGLE_TASK = {"text_column": "review", "text_pair_column": None}


@pytest.mark.parametrize("task, pairs, refusal", [
    (PAIR_TASK, None, "this model reads sentence pairs"),
    (PAIR_TASK, ["x"], None),
    (SINGLE_TASK, ["x"], "this model reads single texts, not sentence pairs"),
    (SINGLE_TASK, None, None),
    ({"text_column": None, "text_pair_column": None}, ["x"], None),  # known by its labels only: either
    ({"text_column": None, "text_pair_column": None}, None, None),
    ({"text_column": "review"}, ["x"], None),  # no pair column recorded at all: either
    ({}, ["x"], None),
])
def test_check_pairs(task, pairs, refusal):
    if refusal is None:
        evaluation.check_pairs(task, pairs)
    else:
        with pytest.raises(BertcError, match=f"^{refusal}"):
            evaluation.check_pairs(task, pairs)


def test_prediction_texts_take_the_artifacts_columns_when_the_file_has_them(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("sentence\treview\tq\ta\nauto\tmine\tfirst\tsecond\n")
    assert evaluation.prediction_texts(str(data), {}) == (["auto"], None)  # auto-detected
    assert evaluation.prediction_texts(str(data), SINGLE_TASK) == (["mine"], None)
    assert evaluation.prediction_texts(str(data), {"text_column": "q", "text_pair_column": "a"}) == \
        (["first"], ["second"])
    assert evaluation.prediction_texts(str(data), {"text_column": "body", "text_pair_column": "a"}) == \
        (["auto"], ["second"])  # the recorded text column is not in the file: auto-detected
    assert evaluation.prediction_texts(str(data), PAIR_TASK) == (["auto"], None)
    assert evaluation.prediction_texts(str(data), SINGLE_TASK, "q", "a") == (["first"], ["second"])  # given wins
    with pytest.raises(BertcError, match="does not exist"):
        evaluation.prediction_texts(str(tmp_path / "missing.tsv"), SINGLE_TASK)


def test_evaluate_scores_duplicates_as_given_and_counts_the_rows_it_leaves_out(keyword_artifact, tmp_path):
    path, _, _ = keyword_artifact
    data = tmp_path / "dupes.tsv"
    data.write_text("review\tstars\ngood\tpos\ngood\tpos\ngood\tpos\n \tneg\nbad\t\n")
    report = evaluation.evaluate(path, str(data))
    assert report["samples"] == 3  # the duplicates are scored; the empty text and the unlabelled row are not
    assert report["dropped_rows"] == {"empty_text": 1, "missing_label": 1}


def test_per_row_correctness_is_one_character_a_row_and_only_when_asked(keyword_artifact):
    path, data, _ = keyword_artifact
    report = evaluation.evaluate(path, str(data), per_row=True)
    assert report["correct"] == "1101" and report["accuracy"] == 0.75  # "good fun" is labelled neg
    assert "correct" not in evaluation.evaluate(path, str(data))  # `bertc evaluate --json` stays as it was
    dataset = TextDataset(texts=["good", "bad", "good"], labels=["pos", "pos", "neg"])
    assert evaluation.score_dataset(KeywordPredictor(["neg", "pos"]), dataset, per_row=True)["correct"] == "100"
