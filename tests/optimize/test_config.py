"""The options of `bertc optimize`: presets, range checks, and budgets and durations given as text."""

from __future__ import annotations

import math
import re

import pytest

from bertc.errors import BertcError
from bertc.optimize.config import PRESETS, OptimizeConfig, SelectConfig, check_number, parse_duration, parse_number


def test_setting_is_the_option_when_given_else_the_presets():
    quick = OptimizeConfig(train="t.tsv", preset="quick")
    assert quick.setting("selection_samples") == 500 and quick.setting("time_budget") == 15 * 60
    assert OptimizeConfig(train="t.tsv").setting("selection_samples") == PRESETS["full"].selection_samples == 2000
    assert OptimizeConfig(train="t.tsv").setting("time_budget") == 150 * 60  # issue 11: the full preset in 2.5 h
    given = OptimizeConfig(train="t.tsv", preset="quick", selection_samples=123, time_budget=60.0)
    assert given.setting("selection_samples") == 123 and given.setting("time_budget") == 60.0
    assert quick.setting("batch_sizes") == (1,) and quick.setting("memory") is False  # preset-only settings


def test_every_problem_of_an_optimize_config_is_reported_at_once():
    with pytest.raises(BertcError) as err:
        OptimizeConfig(train="t.tsv", model="m", start_from="a", max_accuracy_drop=-1, latency_budget_ms=0,
                       time_budget=0, batch_size=0, finetune_samples=0, lr=0.0, finetune_epochs=-1.0)
    problems = str(err.value).split("; ")
    assert problems == [
        "--max-accuracy-drop must be at least 0, got -1",
        "--latency-budget-ms must be above 0, got 0",
        "--time-budget (seconds) must be above 0, got 0",
        "give --model (fine-tune it first) or --from (an artifact already fine-tuned), not both",
        "--finetune-samples must be a whole number of at least 1, got 0",
        "--batch-size must be a whole number of at least 1, got 0",
        "--finetune-epochs must be above 0, got -1",
        "--lr must be above 0, got 0"]


def test_a_wrong_type_is_reported_once_without_a_range_message():
    with pytest.raises(BertcError) as err:
        OptimizeConfig(train="t.tsv", batch_size="32", max_accuracy_drop=math.nan, target="tpu")
    problems = str(err.value).split("; ")
    assert "--target 'tpu' is not one of cpu, cuda" in problems
    assert "--batch-size must be a whole number, got '32'" in problems
    assert sum("--max-accuracy-drop" in problem for problem in problems) == 1
    assert not any("at least 1" in problem for problem in problems)


def test_select_config_ranges():
    assert SelectConfig().max_accuracy_drop == 1.0 and SelectConfig(max_accuracy_drop=0).max_accuracy_drop == 0
    with pytest.raises(BertcError, match=r"^--max-accuracy-drop must be at least 0, got -0.5; --latency-budget-ms "
                                         r"must be above 0, got -1; --test-samples must be at least 1, got 0$"):
        SelectConfig(max_accuracy_drop=-0.5, latency_budget_ms=-1, test_samples=0)


def test_check_number():
    assert check_number("--x", 0, minimum=0) == [] and check_number("--x", 0.5, minimum=0, strict=True) == []
    assert check_number("--x", 0, minimum=0, strict=True) == ["--x must be above 0, got 0"]
    assert check_number("--x", -2.5, minimum=0) == ["--x must be at least 0, got -2.5"]
    assert check_number("--x", math.inf, minimum=0) == ["--x must be a finite number, got inf"]
    assert check_number("--x", True, minimum=0) == ["--x must be a finite number, got True"]
    assert check_number("--x", "1", minimum=0) == ["--x must be a finite number, got '1'"]


def test_parse_number():
    assert parse_number("--max-accuracy-drop", None) is None
    assert parse_number("--max-accuracy-drop", " 1.5 ") == 1.5 and parse_number("--m", "0") == 0.0
    with pytest.raises(BertcError, match=r"^--m must be a number, got 'one'$"):
        parse_number("--m", "one")
    with pytest.raises(BertcError, match=r"^--m must be a finite number, got nan$"):
        parse_number("--m", "nan")
    with pytest.raises(BertcError, match=r"^--m must be at least 0, got -1$"):
        parse_number("--m", "-1")


@pytest.mark.parametrize("text, seconds", [
    ("30m", 1800), ("1.5h", 5400), ("900s", 900), ("1h30m", 5400), ("45", 2700), ("2.5", 150), (" 1H 30M ", 5400),
    ("20min", 1200), ("2hr", 7200), ("1h30m15s", 5415)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1h30", "30 minutes", "-5m", "0m", "0", "1.h", "m"])
def test_parse_duration_refuses(text):
    with pytest.raises(BertcError, match="--time-budget must be"):
        parse_duration(text)


def test_no_duration_is_none():
    assert parse_duration(None) is None


def test_parse_duration_understands_sec():
    assert parse_duration("90sec") == 90


@pytest.mark.parametrize("options, message", [
    ({"search": "lr=2e-4:2e-5"}, "--search lr=2e-4:2e-5: the range is empty"),
    ({"search": "dropout=0.1:0.2"}, "--search: unknown parameter 'dropout'"),
    ({"search": "lr=1e-5:1e-4", "lr": 3e-5}, "--lr fixes the learning rate that --search varies"),
    ({"trials": 0}, "--trials must be a whole number of at least 1"),
    ({"augment_copies": -1}, "--augment-copies must be at least 0"),
])
def test_search_and_transfer_options_are_checked_in_one_line(options, message):
    with pytest.raises(BertcError, match=re.escape(message)):
        OptimizeConfig(train="t.tsv", **options)


def test_the_preset_search_needs_no_flags_and_none_turns_it_off():
    assert OptimizeConfig(train="t.tsv").search_space() == "lr=3e-5:1.5e-4:log"
    assert OptimizeConfig(train="t.tsv", search="none").search_space() is None
    assert OptimizeConfig(train="t.tsv", preset="quick").search_space() is None
