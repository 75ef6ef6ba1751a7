"""The one check that data and a model speak about the same classes."""

from __future__ import annotations

import pytest

from bertc.data.labels import check_known_labels
from bertc.errors import BertcError


def test_known_labels_pass():
    check_known_labels(["a", "b", "a"], ["a", "b", "c"], "d.tsv", "fix it")
    check_known_labels([], ["a"], "d.tsv", "fix it")
    check_known_labels((label for label in ["a"]), iter(["a", "b"]), "d.tsv", "fix it")  # any iterables


def test_labels_compare_as_text_the_way_manifests_store_them():
    check_known_labels([0, 1, 1], ["0", "1"], "d.tsv", "fix it")
    check_known_labels(["1"], [0, 1], "d.tsv", "fix it")


def test_unknown_labels_are_named_with_the_source_the_model_labels_and_the_fix():
    with pytest.raises(BertcError) as err:
        check_known_labels(["pos", "zzz", "neg", "maybe", "zzz"], ["neg", "pos"], "test.tsv",
                           "pass --label-column or retrain on these labels.")
    assert str(err.value) == ("test.tsv has labels the model does not know (maybe, zzz); the model predicts neg, "
                              "pos. pass --label-column or retrain on these labels.")


def test_an_integer_label_outside_the_model_is_unknown():
    with pytest.raises(BertcError, match=r"\(2\); the model predicts 0, 1\."):
        check_known_labels([0, 2], [0, 1], "d.tsv", "")


def test_at_most_five_unknown_labels_are_listed_in_sorted_order():
    with pytest.raises(BertcError) as err:
        check_known_labels([f"x{i}" for i in range(9, 0, -1)], ["a"], "d.tsv", "fix it")
    assert "(x1, x2, x3, x4, x5);" in str(err.value) and "x6" not in str(err.value)
