"""Accuracy differences with their paired 95% intervals, and whether the rows compared resolve a budget."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from bertc.bench.report import console_tables, recommend, section, summary_table
from bertc.bench.results import accuracy_delta, delta_text, read_results, resolution, resolution_text
from bertc.errors import BertcError
from bertc.formatting import with_interval
from bertc.metrics import correctness_bits, paired_bootstrap, read_correctness
from tests.bench.synthetic import synthetic_results


def bits(both_right: int, only_base_right: int = 0, only_variant_right: int = 0, both_wrong: int = 0):
    """Per-row correctness of a baseline and a variant scored on the same rows, as bench records it."""
    base = "1" * both_right + "1" * only_base_right + "0" * only_variant_right + "0" * both_wrong
    variant = "1" * both_right + "0" * only_base_right + "1" * only_variant_right + "0" * both_wrong
    return base, variant


def test_correctness_bits_round_trip_one_character_a_row():
    assert correctness_bits([0, 1, 1, 0], [0, 0, 1, 1]) == "1010"
    assert read_correctness("1010").tolist() == [True, False, True, False]


def test_a_difference_is_written_with_its_interval():
    assert with_interval(-0.2, -1.12, 0.74) == "-0.20 [-1.1, +0.7]" and with_interval(0.0, -0.0, 0.0) == \
        "+0.00 [+0.0, +0.0]"


def test_identical_models_differ_by_zero_with_a_zero_interval():
    base, _ = bits(80, both_wrong=20)
    same = paired_bootstrap(read_correctness(base), read_correctness(base))
    assert (same["difference"], same["low"], same["high"], same["sd_points"]) == (0.0, 0.0, 0.0, 0.0)
    assert delta_text(accuracy_delta({"correct": base}, {"correct": base})) == "+0.00 [+0.0, +0.0]"


@pytest.mark.parametrize("flipped", [1, 5, 40])
def test_a_model_that_flips_k_rows_loses_100k_over_n_points(flipped):
    base, variant = bits(400 - flipped, only_base_right=flipped, both_wrong=100)
    delta = accuracy_delta({"correct": variant}, {"correct": base})
    assert delta["difference"] == pytest.approx(-100 * flipped / 500) and delta["rows"] == 500
    # every disagreement goes one way: no resample can show a gain, and the interval holds the difference
    assert delta["low"] <= delta["difference"] <= delta["high"] <= 0


def test_the_interval_is_computed_from_the_rows_paired_not_from_the_accuracies():
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.85
    close = base.copy()
    close[:10] = ~close[:10]  # disagrees on 10 rows
    far = rng.random(1000) < 0.85  # as accurate, but wrong on other rows
    tight = paired_bootstrap(base, close)
    wide = paired_bootstrap(base, far)
    assert wide["high"] - wide["low"] > 3 * (tight["high"] - tight["low"])


def test_no_interval_without_per_row_correctness_or_on_different_rows():
    assert accuracy_delta({"accuracy": 0.9}, {"accuracy": 0.91}) is None
    assert accuracy_delta({"correct": "1101"}, {"correct": "11011"}) is None
    assert delta_text(None, -0.5) == "-0.50" and delta_text(None) == "-"


# 20 rows only the baseline gets right, 15 only the variant: sd of the per-row difference 26.44 points
SMALL = bits(400, only_base_right=20, only_variant_right=15, both_wrong=65)  # 500 rows
LARGE = bits(16000, only_base_right=800, only_variant_right=600, both_wrong=2600)  # 20,000 rows, same rates


def delta_of(pair):
    base, variant = pair
    return accuracy_delta({"correct": variant}, {"correct": base})


def test_a_slice_too_small_for_the_budget_says_so_and_how_many_rows_would():
    delta = delta_of(SMALL)
    assert delta["difference"] == pytest.approx(-1.0)
    found = resolution(delta, 1.0)
    # half-width 1.96 * 26.44 / sqrt(500) = 2.32; rows for 1 point: (1.96 * 26.44)^2 = 2,686, rounded up
    assert found == {"rows": 500, "half_width": pytest.approx(2.317, abs=1e-3), "rows_needed": 2700}
    assert resolution_text([delta], 1.0, "the selection slice") == (
        "the selection slice (500 rows) cannot resolve a 1-point budget: the 95% interval is ±2.32 points; "
        "about 2,700 rows would")
    assert resolution(delta, 3.0) is None  # a 3-point budget it does resolve


def test_a_large_enough_slice_says_nothing():
    assert resolution(delta_of(LARGE), 1.0) is None
    assert resolution_text([delta_of(LARGE), None], 1.0, "the selection slice") is None
    assert resolution(delta_of(SMALL), 0.0) is None  # no number of rows resolves a zero budget


def with_correctness(results: dict, correct: dict[str, str]) -> dict:
    for variant in results["variants"]:
        variant["correct"] = correct[variant["name"]]
        variant["samples"] = len(variant["correct"])
    return results


def paired_results() -> dict:
    base, variant = SMALL
    results = synthetic_results([("base", 10.0, 0.87), ("pruned", 4.0, 0.86)])
    results["variants"][1]["vs_baseline"]["accuracy_delta_points"] = -1.0
    return with_correctness(results, {"base": base, "pruned": variant})


def test_the_report_and_the_terminal_show_every_difference_with_its_interval():
    results = paired_results()
    expected = delta_text(delta_of(SMALL))
    assert expected.startswith("-1.00 [")
    headers, rows = summary_table(results)
    column = headers.index("Δ points (95% CI)")
    assert [row[column] for row in rows] == ["-", expected]  # the baseline against itself: no figure
    advice = recommend(results, max_accuracy_drop=2.0)["text"]
    assert f"({expected} points against the baseline" in advice
    terminal = Console(record=True, width=300, file=io.StringIO())
    terminal.print(console_tables(results)[0])
    text = terminal.export_text()
    assert expected in text and "Δ (95% CI)" in text


def test_the_report_notes_when_its_data_cannot_resolve_the_budget():
    notes = section(paired_results(), "results.json", 2.0, 1)["notes"]
    assert notes == ["The bench data (500 rows) cannot resolve a 2-point budget: the 95% interval is ±2.32 points; "
                     "about 680 rows would."]
    assert section(paired_results(), "results.json", 3.0, 1)["notes"] == []


def test_bench_records_which_rows_each_variant_gets_right_and_the_interval_against_the_baseline(tiny_results):
    results = read_results(tiny_results)
    for variant in results["variants"]:
        correct = variant["correct"]
        assert len(correct) == variant["samples"] == results["data"]["samples"]
        assert correct.count("1") / len(correct) == pytest.approx(variant["accuracy"])
    onnx = results["variants"][1]["vs_baseline"]
    assert onnx["accuracy_delta_low_points"] <= onnx["accuracy_delta_points"] <= onnx["accuracy_delta_high_points"]
    broken = json.loads(tiny_results.read_text())
    broken["variants"][0]["correct"] = "10x1"
    path = tiny_results.parent / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(BertcError, match="has a 'correct' that is not a string of 0s and 1s"):
        read_results(path)
