"""The bench results file: where it may be written, and what is read back."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from bertc.bench.latency import summarize
from bertc.bench.results import RESULTS_FORMAT, RESULTS_VERSION, check_results_output, read_results, speedup
from bertc.cli import app
from bertc.errors import BertcError
from tests.bench.conftest import deny_writes_in
from tests.bench.synthetic import MISLEADING_ROUNDS, measured_results, synthetic_results


def test_a_new_file_is_fine_an_existing_one_needs_overwrite(tmp_path):
    out = tmp_path / "results.json"
    assert check_results_output(str(out), overwrite=False) == out
    out.write_text("{}")
    with pytest.raises(BertcError, match=r"results.json already exists; choose another --out or pass --overwrite"):
        check_results_output(out, overwrite=False)
    assert check_results_output(out, overwrite=True) == out
    assert out.read_text() == "{}"  # checking never deletes


def test_a_directory_is_not_a_results_file(tmp_path):
    with pytest.raises(BertcError, match=r"is a directory; pass a file name such as results.json"):
        check_results_output(tmp_path, overwrite=True)


def test_read_results_returns_the_file(tmp_path):
    path = tmp_path / "r.json"
    results = synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.89)])
    path.write_text(json.dumps(results))
    assert read_results(str(path)) == results


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"bad.json is not valid JSON \("),
    ("[1, 2]", r"bad.json is not a bertc bench results file"),
    (json.dumps({"format": "something-else", "format_version": RESULTS_VERSION}), r"is not a bertc bench results"),
    (json.dumps({"format": RESULTS_FORMAT, "format_version": 0}),
     rf"has results format version 0; this bertc reads version {RESULTS_VERSION}\. Re-run `bertc bench`"),
    (json.dumps({"format": RESULTS_FORMAT}), r"has results format version None"),
])
def test_read_results_refuses_anything_else(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(BertcError, match=message):
        read_results(path)


def test_read_results_of_a_missing_file(tmp_path):
    with pytest.raises(BertcError, match=r"results file .*missing.json does not exist"):
        read_results(tmp_path / "missing.json")
    with pytest.raises(BertcError, match="does not exist"):
        read_results(tmp_path)  # a directory is not a results file either


def test_an_out_inside_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(BertcError, match=r"--out .*results.json is inside .*notes.txt, which is a file"):
        check_results_output(tmp_path / "notes.txt" / "sub" / "results.json", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_out_in_an_unwritable_directory_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    deny_writes_in(monkeypatch, locked)
    with pytest.raises(BertcError, match=r"--out .*results.json: cannot write in .*locked \(Permission denied\)"):
        check_results_output(locked / "results.json", overwrite=False)
    assert list(locked.iterdir()) == []


# ---------------------------------------------------------------------------------------------- speedups

def test_the_speedup_is_the_median_of_the_ratios_its_range_spans():
    base, fast = (summarize(MISLEADING_ROUNDS[name], 1) for name in ("base", "fast"))
    ratios = [20 / 3, 8 / 2]
    assert base["p50_ms"] / fast["p50_ms"] == pytest.approx(3.6)  # the old figure, outside 4.00-6.67
    stated = speedup(fast, base)
    assert stated == {"speedup": pytest.approx(sum(ratios) / 2), "speedup_min": pytest.approx(min(ratios)),
                      "speedup_max": pytest.approx(max(ratios))}
    assert stated["speedup_min"] <= stated["speedup"] <= stated["speedup_max"]
    assert speedup(base, base) == {"speedup": 1.0, "speedup_min": 1.0, "speedup_max": 1.0}
    three = speedup({"round_p50_ms": [1.0, 2.0, 4.0]}, {"round_p50_ms": [10.0, 10.0, 10.0]})
    assert three == {"speedup": 5.0, "speedup_min": 2.5, "speedup_max": 10.0}  # the median, not the mean


def test_rounds_that_took_no_time_give_no_speedup():
    assert speedup({"round_p50_ms": [0.0, 0.0]}, {"round_p50_ms": [1.0, 1.0]}) == {
        "speedup": None, "speedup_min": None, "speedup_max": None}
    assert speedup({"round_p50_ms": [0.0, 2.0]}, {"round_p50_ms": [1.0, 4.0]})["speedup"] == 2.0


def test_version_1_speedups_are_restated_round_by_round(tmp_path):
    results = measured_results(MISLEADING_ROUNDS)
    fast = results["variants"][1]["latency"][0]
    expected = {key: fast[key] for key in ("speedup", "speedup_min", "speedup_max")}
    fast["speedup"] = 3.6  # what version 1 stored: the ratio of the overall medians
    results["format_version"] = 1
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(results))
    read = read_results(path)
    assert read["format_version"] == RESULTS_VERSION
    row = read["variants"][1]["latency"][0]
    assert {key: row[key] for key in expected} == pytest.approx(expected)
    assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]


# ---------------------------------------------------------------------------------------------- incomplete files

def drop(*keys):
    """A change that deletes results[k1][k2]...[kn]."""
    def change(results):
        target = results
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


def put(value, *keys):
    def change(results):
        target = results
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


TRUNCATIONS = {
    "no variants": (drop("variants"), "no 'variants'"),
    "empty variants": (put([], "variants"), "no variants"),
    "no settings": (drop("settings"), "no 'settings'"),
    "no config": (drop("config"), "no 'config'"),
    "config without runs": (drop("config", "runs"), "config has no 'runs'"),
    "no data source": (drop("data", "source"), "data has no 'source' or 'samples'"),
    "no environment": (drop("environment"), "no 'environment'"),
    "variant without latency": (drop("variants", 1, "latency"), "variant 'fast' has no 'latency'"),
    "variant without a name": (drop("variants", 1, "name"), "variant 2 has no 'name'"),
    "variant without lineage": (drop("variants", 0, "lineage"), "variant 'base' has no 'lineage'"),
    "a setting without latency": (put([], "variants", 1, "latency"),
                                  "variant 'fast' has no latency at batch 1, real lengths"),
    "a row without p50": (drop("variants", 1, "latency", 0, "p50_ms"),
                          "variant 'fast' at batch 1, real lengths has no 'p50_ms'"),
    "a row without speedup": (drop("variants", 1, "latency", 0, "speedup_max"), "has no 'speedup_max'"),
    "a row without rounds": (put([], "variants", 1, "latency", 0, "round_p50_ms"), "has no 'round_p50_ms'"),
    "a p50 that is text": (put("fast", "variants", 1, "latency", 0, "p50_ms"), "has no 'p50_ms'"),
    "accuracy that is text": (put("high", "variants", 1, "accuracy"),
                              "variant 'fast' has a 'accuracy' that is not a number"),
    "a setting without its length": (drop("settings", 0, "seq_len"), "a setting without 'batch_size' or 'seq_len'"),
    "an unknown baseline": (put("gone", "baseline"), "the baseline 'gone' is not among the variants"),
    "a gpu without a name": (put({"driver": "1"}, "environment", "gpu"), "the environment's 'gpu' has no 'name'"),
}


@pytest.mark.parametrize("case", list(TRUNCATIONS))
def test_an_incomplete_results_file_is_refused_in_one_line(tmp_path, case):
    change, what = TRUNCATIONS[case]
    results = copy.deepcopy(synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.89)]))
    change(results)
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(results))
    with pytest.raises(BertcError) as err:
        read_results(path)
    message = str(err.value)
    assert message.startswith(f"{path} is incomplete: ") and what in message
    assert message.endswith("re-run `bertc bench` to write it again") and "\n" not in message


def test_every_problem_is_counted_but_only_the_first_are_shown(tmp_path):
    results = synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.89)])
    for key in ("created", "config", "environment", "data", "settings"):
        del results[key]
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(results))
    with pytest.raises(BertcError, match=r"incomplete: no 'created'; no 'config'; no 'environment' and 2 more\."):
        read_results(path)


@pytest.mark.parametrize("case", ["no variants", "variant without latency", "a setting without latency",
                                  "a row without p50", "config without runs", "an unknown baseline"])
def test_cli_report_on_an_incomplete_file_exits_2_in_one_line_and_writes_nothing(tmp_path, case):
    change, what = TRUNCATIONS[case]
    results = synthetic_results([("base", 10.0, 0.9), ("fast", 2.0, 0.89)])
    change(results)
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(results))
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "report")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and what in result.stderr and "re-run `bertc bench`" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before  # no report directory, no staging directory
