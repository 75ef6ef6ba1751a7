"""TOML for recipes: what the small writer writes must read back as the same document."""

from __future__ import annotations

import math

import pytest

from bertc.errors import BertcError
from bertc.optimize.toml_io import dumps, key, loads, toml_value


def test_a_recipe_like_document_round_trips():
    document = {
        "recipe": {"format": "bertc-recipe", "version": 1, "candidates": ["layers3-int8-dynamic", "base-fp16"]},
        "select": {"max_accuracy_drop": 1.0, "latency_budget_ms": 2.5, "exhaustive": False},
        "bench": {"batch_sizes": [1, 8], "seq_lens": ["real", 128]},
        "stages": [
            {"name": "finetune", "kind": "finetune", "config": {"data": {"train": "/d/train.tsv"}, "train": {
                "lr": 8e-05, "epochs": 1.0}}},
            {"name": "layers3", "kind": "distill", "input": "finetune", "config": {"student_layers": 3}},
        ],
    }
    assert loads(dumps(document)) == document


def test_tables_come_after_the_plain_keys_and_array_items_hold_their_subtables():
    text = dumps({"b": {"x": 1}, "a": 1, "items": [{"n": 1, "sub": {"deep": True}}, {"n": 2}]})
    assert text == ('a = 1\n\n[b]\nx = 1\n\n[[items]]\nn = 1\n\n[items.sub]\ndeep = true\n\n[[items]]\nn = 2\n')


def test_none_is_left_out_everywhere():
    text = dumps({"a": None, "t": {"b": None, "c": 1}, "l": [1, None, 2], "inline": [{"x": None, "y": 2}, 3]})
    assert loads(text) == {"t": {"c": 1}, "l": [1, 2], "inline": [{"y": 2}, 3]}


def test_strings_are_escaped():
    tricky = {"quote": 'say "hi"', "backslash": "C:\\data\\train.tsv", "lines": "a\nb\tc\r", "unicode": "naïve ✓",
              "control": "bell\x07", "empty": ""}
    assert loads(dumps(tricky)) == tricky


def test_keys_are_quoted_when_they_are_not_bare():
    assert key("lr") == "lr" and key("max-length_2") == "max-length_2" and key(3) == "3"
    document = {"a.b": 1, "with space": 2, "": 3, "é": 4, "quote\"d": {"x": 5}}
    assert loads(dumps(document)) == document


def test_numbers_bools_and_special_floats():
    assert toml_value(True) == "true" and toml_value(0) == "0" and toml_value(2.5e-7) == "2.5e-07"
    assert [toml_value(x) for x in (math.inf, -math.inf)] == ["inf", "-inf"]
    read = loads(dumps({"values": [1e16, 0.1, -0.0, 7], "nan": math.nan, "flag": False}))
    assert read["values"] == [1e16, 0.1, -0.0, 7] and isinstance(read["values"][3], int)
    assert math.isnan(read["nan"]) and read["flag"] is False


def test_tuples_and_inline_tables():
    assert toml_value((1, 8)) == "[1, 8]"
    assert toml_value({"a": 1, "b c": "x"}) == '{a = 1, "b c" = "x"}'
    assert loads(dumps({"mixed": [{"a": 1}, "x"]})) == {"mixed": [{"a": 1}, "x"]}


def test_empty_tables_and_lists_survive():
    assert loads(dumps({"empty": {}, "none": []})) == {"empty": {}, "none": []}


def test_comments_head_the_file():
    text = dumps({"a": 1}, ["made by bertc optimize", "", "not kept: layers2 (over budget)"])
    assert text.splitlines()[:4] == ["# made by bertc optimize", "#", "# not kept: layers2 (over budget)", ""]
    assert loads(text) == {"a": 1}


def test_a_value_toml_cannot_hold_is_a_type_error():
    with pytest.raises(TypeError, match="cannot write set to TOML"):
        dumps({"a": {1, 2}})


def test_bad_toml_is_one_line_bertc_error():
    with pytest.raises(BertcError) as err:
        loads("[recipe\nversion = 1\n")
    assert "\n" not in str(err.value) and "line 1" in str(err.value)


def test_the_delete_control_character_is_escaped():
    assert loads(dumps({"s": "a\x7fb"})) == {"s": "a\x7fb"}


def test_a_multi_line_comment_stays_a_comment():
    assert loads(dumps({"a": 1}, ["not kept: layers2: first line\nsecond line"])) == {"a": 1}
