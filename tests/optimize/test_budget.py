"""The accuracy budget `bertc optimize` states: every difference with its paired 95% interval, whether the selection
slice can resolve the budget, the shipped model's test accuracy beside its selection figure, and resuming a run
recorded before per-row correctness was kept."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from bertc.bench.results import accuracy_delta, delta_text
from bertc.optimize import finish
from bertc.optimize import optimize as optimize_module
from bertc.optimize.config import SelectConfig
from bertc.optimize.optimize import Run
from bertc.optimize.runtimes import choose_at
from bertc.optimize.search import Search, parse_candidate
from tests.bench.test_intervals import LARGE, SMALL, bits
from tests.optimize.test_search import MINILM, SEQ

ONE_RUN = [{"batch_size": 1, "seq_len": "real"}]


def bench_results(correct: dict[str, str], p50: dict[str, float]) -> dict:
    """What `bertc bench` returns for variants scored on the same selection rows; the first is the baseline."""
    def row(ms):
        return {"batch_size": 1, "seq_len": "real", "p50_ms": ms, "round_p50_ms": [ms] * 3, "throughput": 1000 / ms}

    return {"baseline": next(iter(correct)), "settings": ONE_RUN, "variants": [
        {"name": name, "path": f"/run/stages/{name}", "backend": "onnxruntime", "latency": [row(p50[name])],
         "correct": bits_, "accuracy": bits_.count("1") / len(bits_)} for name, bits_ in correct.items()]}


def summary_for(selection: tuple[str, str], test: tuple[str, str] | None, budget: float = 1.0) -> dict:
    """The summary `finish_run` builds, from the real choice, for a baseline and one candidate."""
    base, candidate = selection
    choice = choose_at(bench_results({"finetune": base, "ffn50-int8-dynamic": candidate},
                                     {"finetune": 10.0, "ffn50-int8-dynamic": 2.0}), budget)
    rows = choice["rows"]
    if test is not None:
        for row, correct in zip(rows, test):
            row.update(test_accuracy=correct.count("1") / len(correct), test_correct=correct)
        for row in rows:
            row["test_drop_points"] = 100 * (rows[0]["test_accuracy"] - row["test_accuracy"])
            row["test_delta"] = None if row["baseline"] else accuracy_delta({"correct": row["test_correct"]},
                                                                             {"correct": test[0]})
    return {"winner": choice["winner"]["name"], "best": "/run/best", "shipped_baseline": choice["shipped_baseline"],
            "text": choice["text"], "rows": rows, "searched": [], "report": "/run/report/report.html",
            "bench": "/run/bench.json", "recipe": "/run/recipe.toml", "test_data": "/d/test.tsv" if test else None,
            "notes": [], "resolution": finish.selection_resolution(rows, choice["winner"], budget)}


def printed(summary: dict) -> str:
    out = io.StringIO()
    console = Console(file=out, width=250, color_system=None)
    original, finish.console = finish.console, console
    try:
        finish.print_summary(summary)
    finally:
        finish.console = original
    return out.getvalue()


TEST = bits(1700, only_base_right=40, only_variant_right=15, both_wrong=66)  # 1,821 test rows: 25 more wrong


def test_the_table_summary_and_choice_carry_the_selection_and_test_intervals():
    summary = summary_for(SMALL, TEST)
    selection, test = delta_text(accuracy_delta(*[{"correct": c} for c in SMALL[::-1]])), delta_text(
        accuracy_delta(*[{"correct": c} for c in TEST[::-1]]))
    assert selection.startswith("-1.00 [") and test.startswith("-1.37 [")
    header, lines = finish.summary_rows(summary)
    assert header[3] == header[5] == "Δ (95% CI)"
    assert lines[0][3] == lines[0][5] == "+0.00"  # the baseline against itself
    assert lines[1][:6] == ["ffn50-int8-dynamic", "ONNX Runtime", "83.00", selection, "94.18", test]
    assert f"({selection} points; budget 1 point)" in summary["text"]
    row = summary["rows"][1]  # the summary JSON: the difference, its interval and the rows it was measured on
    assert row["selection_delta"]["rows"] == 500 and row["selection_delta"]["low"] < -1 < row["selection_delta"]["high"]
    assert row["test_delta"]["difference"] == pytest.approx(-100 * 25 / 1821)


def test_the_shipped_models_test_accuracy_is_printed_beside_its_selection_figure():
    summary = summary_for(SMALL, TEST)
    line = finish.shipped_line(summary)
    selection = delta_text(summary["rows"][1]["selection_delta"])
    test = delta_text(summary["rows"][1]["test_delta"])
    assert line == (f"shipped ffn50-int8-dynamic: selection 83.00% on 500 rows, Δ {selection}; test 94.18% on 1,821 "
                    f"rows, Δ {test} (Δ: points against the fine-tuned model, 95% interval)")
    assert line in printed(summary)
    assert line in finish.summary_markdown(summary, SelectConfig())
    assert "test: not measured (no --test data)" in finish.shipped_line(summary_for(SMALL, None))


def test_a_selection_slice_too_small_for_the_budget_is_called_out_everywhere():
    summary = summary_for(SMALL, TEST)
    expected = ("the selection slice (500 rows) cannot resolve a 1-point budget: the 95% interval is ±2.32 points; "
                "about 2,700 rows would")
    assert summary["resolution"] == expected
    assert f"note: {expected}" in printed(summary)
    assert f"Note: {expected}." in finish.summary_markdown(summary, SelectConfig())
    large = summary_for(LARGE, None)
    assert large["resolution"] is None and "cannot resolve" not in printed(large)
    assert "cannot resolve" not in finish.summary_markdown(large, SelectConfig())


def test_a_shipped_baseline_is_checked_against_the_least_resolved_candidate():
    summary = summary_for(SMALL, None, budget=0.5)  # the candidate loses 1 point: over budget, the baseline ships
    assert summary["shipped_baseline"] and "cannot resolve a 0.5-point budget" in summary["resolution"]
    assert finish.shipped_line(summary) == "shipped finetune (the fine-tuned model): selection 84.00%"


# ---------------------------------------------------------------------------------------------- the search's state

def bare_run(nodes: dict, monkeypatch) -> tuple[Run, list]:
    """A Run with only what scoring a node needs; ``evaluate`` scores 3 of 4 selection rows right."""
    run = Run.__new__(Run)
    run.state = {"nodes": nodes}
    run.plan = SimpleNamespace(selection="/d/dev.tsv", columns=None, selection_rows=4)
    run.config = SimpleNamespace(target="cpu")
    run.base_accuracy, run.base_correct = 1.0, "1111"
    calls = []

    def evaluate(path, data, **options):
        calls.append((path.name, options["max_samples"], options["per_row"]))
        return {"accuracy": 0.75, "correct": "1101"}

    monkeypatch.setattr(optimize_module, "evaluate", evaluate)
    return run, calls


def test_a_node_recorded_before_per_row_correctness_is_evaluated_again_on_resume(monkeypatch):
    old = {"kind": "distill", "status": "reused", "selection_accuracy": 0.5}  # an older bertc's record
    run, calls = bare_run({"layers1": old}, monkeypatch)
    assert run.drop("layers1", Path("/run/stages/layers1")) == pytest.approx(25.0)
    node = run.state["nodes"]["layers1"]
    assert calls == [("layers1", 4, True)] and node["selection_correct"] == "1101"
    assert node["selection_delta"]["difference"] == pytest.approx(-25.0) and node["selection_delta"]["rows"] == 4
    assert run.loss("layers1", 25.0).startswith("loses 25.00 [") and "points on the selection slice" in run.loss(
        "layers1", 25.0)
    run.drop("layers1", Path("/run/stages/layers1"))  # recorded now: reused, not evaluated again
    assert len(calls) == 1


def test_a_reused_node_keeps_its_rows_and_the_from_artifact_is_always_scored(monkeypatch):
    recorded = {"status": "reused", "selection_accuracy": 1.0, "selection_correct": "1111"}
    run, calls = bare_run({"layers1": dict(recorded), "from": dict(recorded)}, monkeypatch)
    assert run.drop("layers1", Path("/run/stages/layers1")) == 0.0 and calls == []
    assert run.state["nodes"]["layers1"]["selection_delta"]["high"] == 0.0
    assert run.selection_accuracy("from", Path("/elsewhere/from"), reuse=False) == 0.75 and len(calls) == 1
    stale = {"status": "reused", "selection_accuracy": 1.0, "selection_correct": "11111"}  # another slice size
    run, calls = bare_run({"layers1": stale}, monkeypatch)
    run.drop("layers1", Path("/run/stages/layers1"))
    assert len(calls) == 1


def test_an_early_stop_states_the_loss_that_stopped_the_chain_with_its_interval():
    search = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0)
    assert not search.record_node("layers3", parse_candidate("layers3", "cpu").steps, 2.5, "2.50 [1.1, 3.9]")
    assert "step layers3 already loses 2.50 [1.1, 3.9] points" in search.skip_reason(parse_candidate("layers3+ffn50",
                                                                                                     "cpu"))
    assert "as compressed as layers3, which already loses 2.50 [1.1, 3.9] points" in search.skip_reason(
        parse_candidate("layers2", "cpu"))
