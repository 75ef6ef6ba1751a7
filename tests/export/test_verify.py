"""Checking a converted model against its reference: the samples it runs on and the comparison of made-up logits."""

from __future__ import annotations

import numpy as np
import pytest

from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.export.verify import (
    FALLBACK_TEXTS,
    Samples,
    check_samples_fit,
    compare,
    eval_report,
    logits_on,
    verification_samples,
)


def labelled(labels, texts=None) -> Samples:
    texts = texts or [f"text {i}" for i in range(len(labels))]
    return Samples(TextDataset(texts=texts, labels=labels, source="dev.tsv"), "dev.tsv", True)


REFERENCE = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.4], [0.0, 3.0]], dtype=np.float32)
CANDIDATE = np.array([[1.9, 0.0], [0.0, 1.2], [0.4, 0.45], [0.0, 3.0]], dtype=np.float32)


def test_compare_measures_logit_differences_and_label_agreement():
    result = compare(REFERENCE, CANDIDATE, Samples(TextDataset(["a"] * 4, [None] * 4), "built-in", False), ["n", "p"])
    assert result["data"] == "built-in" and result["samples"] == 4
    assert result["max_abs_logit_diff"] == pytest.approx(0.2, abs=1e-6)
    assert result["mean_abs_logit_diff"] == pytest.approx((0.1 + 0.2 + 0.1 + 0.05) / 8, abs=1e-6)
    assert result["label_agreement"] == 0.75 and result["disagreements"] == 1  # row 2 flips
    assert "accuracy" not in result and "reference_accuracy" not in result  # unlabelled: nothing to score


def test_compare_scores_both_models_on_labelled_samples():
    # truth: n, p, n, n -> the reference gets rows 0, 1, 2 right (75%), the candidate rows 0, 1 (50%)
    result = compare(REFERENCE, CANDIDATE, labelled(["n", "p", "n", "n"]), ["n", "p"])
    assert result["reference_accuracy"] == 0.75 and result["accuracy"] == 0.5
    assert result["accuracy_drop_points"] == pytest.approx(25.0)


def test_labels_are_matched_as_text():
    # Integer labels in the data and text labels in the manifest (and the other way round) name the same class.
    assert compare(REFERENCE, REFERENCE, labelled([0, 1, 0, 1]), ["0", "1"])["accuracy"] == 1.0
    assert compare(REFERENCE, REFERENCE, labelled(["0", "1", "0", "1"]), [0, 1])["accuracy"] == 1.0


def test_compare_of_nothing_agrees_fully():
    empty = np.zeros((0, 2), dtype=np.float32)
    result = compare(empty, empty, Samples(TextDataset([], []), "none", False), ["n", "p"])
    assert (result["max_abs_logit_diff"], result["mean_abs_logit_diff"], result["label_agreement"],
            result["disagreements"]) == (0.0, 0.0, 1.0, 0)


def test_eval_report_scores_logits_against_the_labels():
    report = eval_report(REFERENCE, labelled(["n", "p", "n", "n"]), ["n", "p"])
    assert report["accuracy"] == 0.75 and report["data"] == "dev.tsv"
    assert report["confusion_matrix"] == [[2, 1], [0, 1]]


def test_logits_on_passes_texts_and_pairs():
    class Recorder:
        def logits(self, texts, pairs):
            return (texts, pairs)

    samples = Samples(TextDataset(["q1", "q2"], [0, 1], pairs=["a1", "a2"]), "pairs", True)
    assert logits_on(Recorder(), samples) == (["q1", "q2"], ["a1", "a2"])


def test_check_samples_fit_refuses_labels_the_model_does_not_know():
    check_samples_fit(labelled(["n", "p"]), ["n", "p"])
    check_samples_fit(Samples(TextDataset(["a"], [None]), "built-in", False), ["n", "p"])  # unlabelled: no check
    with pytest.raises(BertcError, match=r"dev.tsv has labels the model does not know \(x\).*Pass --data"):
        check_samples_fit(labelled(["n", "x"]), ["n", "p"])


# ---------------------------------------------------------------------------------------------- samples

@pytest.fixture
def files(tmp_path):
    for name, rows in (("dev.tsv", 6), ("train.tsv", 8), ("other.tsv", 4)):
        (tmp_path / name).write_text("sentence\tlabel\n" + "".join(f"{name} row {i}\t{i % 2}\n" for i in range(rows)))
    return tmp_path


def test_given_data_wins_and_is_capped(files):
    task = {"eval_data": str(files / "dev.tsv")}
    samples = verification_samples(str(files / "other.tsv"), task, "validation", max_samples=3)
    assert samples.labelled and samples.dataset.texts == [f"other.tsv row {i}" for i in range(3)]
    with pytest.raises(BertcError, match=r"--data .*missing.tsv does not exist"):
        verification_samples(str(files / "missing.tsv"), task, "validation", 10)


def test_recorded_eval_data_then_training_data(files):
    task = {"eval_data": str(files / "dev.tsv"), "train_data": str(files / "train.tsv")}
    assert verification_samples(None, task, "validation", 100).dataset.texts[0] == "dev.tsv row 0"
    task["eval_data"] = str(files / "gone.tsv")  # recorded on another machine
    assert verification_samples(None, task, "validation", 100).dataset.texts[0] == "train.tsv row 0"
    task = {"data": {"eval_source": str(files / "other.tsv")}, "train_data": str(files / "train.tsv")}
    assert len(verification_samples(None, task, "validation", 100).dataset) == 4


def test_built_in_sentences_when_no_data_is_known():
    samples = verification_samples(None, {}, "validation", max_samples=5)
    assert not samples.labelled and samples.dataset.texts == FALLBACK_TEXTS[:5]
    assert "pass --data to measure accuracy" in samples.source
    with pytest.raises(BertcError, match="no labelled data to verify this sentence-pair model on"):
        verification_samples(None, {"text_pair_column": "sentence2"}, "validation", 5)
