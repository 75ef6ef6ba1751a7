"""The end of a `bertc optimize` run: the summary table and file, shipping the winner with a serving script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from rich.console import Console

from bertc.artifact import write_manifest
from bertc.bench.config import BenchConfig
from bertc.inference.onnx import SPIN_WITHIN_RUNS
from bertc.optimize import finish
from bertc.optimize.config import SelectConfig
from tests.conftest import tiny_tokenizer
from tests.inference.test_onnx import counting_graph


def row(name, accuracy, drop, p50, speedup, *, baseline=False, within=True, path=None):
    return {"name": name, "path": path or f"/run/stages/{name}", "accuracy": accuracy, "drop_points": drop,
            "p50_ms": p50, "round_p50_ms": [p50] * 3, "speedup": speedup, "within_budget": within,
            "baseline": baseline, "runtime": "PyTorch" if baseline else "ONNX Runtime"}


ROWS = [row("finetune", 0.9, 0.0, 10.0, 1.0, baseline=True), row("base-int8-dynamic", 0.895, 0.5, 4.0, 2.5),
        row("layers3-int8-dynamic", 0.88, 2.0, 2.0, 5.0, within=False),
        row("layers4-int8-dynamic", 0.893, 0.7, 2.5, 4.0)]


def summary_of(rows, winner="layers4-int8-dynamic", searched=()):
    return {"winner": winner, "best": "/run/best", "shipped_baseline": False, "text": "Winner: layers4-int8-dynamic.",
            "rows": rows, "searched": list(searched), "report": "/run/report/report.html", "bench": "/run/bench.json",
            "recipe": "/run/recipe.toml", "test_data": None}


def test_summary_rows_mark_baseline_budget_and_the_shipped_variant():
    header, lines = finish.summary_rows(summary_of(ROWS))
    assert header[:2] == ["variant", "runtime"] and len(header) == len(lines[0]) == 10
    assert [line[-1] for line in lines] == ["baseline", "", "over budget", "shipped"]
    assert lines[3][:5] == ["layers4-int8-dynamic", "ONNX Runtime", "89.30", "-0.70", "-"]  # a drop is a loss
    assert lines[0][1:4] == ["PyTorch", "90.00", "+0.00"] and lines[3][6:9] == ["2.5", "4x", "-"]


def test_an_over_budget_winner_and_a_shipped_baseline_are_both_marked():
    assert finish.summary_rows(summary_of(ROWS, winner="layers3-int8-dynamic"))[1][2][-1] == "over budget, shipped"
    assert finish.summary_rows(summary_of(ROWS, winner="finetune"))[1][0][-1] == "baseline, shipped"


def test_gain_is_the_negative_drop():
    assert finish.gain(None) is None and finish.gain(1.5) == -1.5 and finish.gain(-0.25) == 0.25


def test_summary_markdown_table_notes_and_footer():
    searched = [{"name": "layers2", "status": "skipped", "reason": "time budget"}, {"name": "base", "status": "built"}]
    text = finish.summary_markdown(summary_of(ROWS, searched=searched), SelectConfig(max_accuracy_drop=1.0))
    lines = text.splitlines()
    assert lines[:3] == ["# bertc optimize", "", "Winner: layers4-int8-dynamic."]
    assert lines[4].startswith("shipped layers4-int8-dynamic: selection 89.30%, Δ -0.70; test: not measured")
    assert lines[6].startswith("| variant | runtime | selection % | Δ (95% CI) |") and lines[7] == "|" + "---|" * 10
    assert lines[11].startswith("| layers4-int8-dynamic | ONNX Runtime | 89.30 | -0.70 |")
    assert lines[11].endswith("| shipped |")
    assert "Candidates not shipped:" in lines and "- layers2: skipped (time budget)" in lines
    assert "- base" not in text  # built, no reason: not a note
    assert "budget 1 point." in text and "Test: no test data given." in text
    without_notes = finish.summary_markdown(summary_of(ROWS), SelectConfig(max_accuracy_drop=2.0))
    assert "Candidates not shipped" not in without_notes and "budget 2 points." in without_notes


def test_print_summary_shows_the_table_notes_and_where_to_look(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(finish, "console", Console(file=out, width=200, color_system=None))
    finish.print_summary(summary_of(ROWS, searched=[{"name": "layers2", "status": "failed", "reason": "boom"}]))
    text = out.getvalue()
    assert "layers4-int8-dynamic" in text and "  layers2: failed (boom)" in text
    assert 'best model: /run/best (serve it: python /run/best/serve.py "some text")' in text
    assert "report: /run/report/report.html   recipe: /run/recipe.toml" in text


def test_finish_run_scores_test_accuracy_against_the_baseline_and_the_standard_recipe(tmp_path, monkeypatch):
    calls = {}
    rows = [dict(r) for r in ROWS]

    def bench(paths, config, out, overwrite):
        calls["bench"] = (paths, config.baseline, out, overwrite)
        return {"variants": []}

    monkeypatch.setattr(finish, "bench", bench)
    monkeypatch.setattr(finish, "report", lambda *a, **k: tmp_path / "report")
    monkeypatch.setattr(finish, "choose_at", lambda results, drop, latency, serve_batch: {
        "rows": rows, "winner": rows[3], "shipped_baseline": False, "text": "Winner: layers4-int8-dynamic."})
    accuracy = {"finetune": 0.9, "base-int8-dynamic": 0.89, "layers3-int8-dynamic": 0.85, "layers4-int8-dynamic": 0.88}
    # on 100 test rows, each variant gets wrong the baseline's 10 wrong rows and some of its right ones
    correct = {name: "0" * 10 + "0" * round(100 * (0.9 - a)) + "1" * round(100 * a) for name, a in accuracy.items()}
    monkeypatch.setattr(finish, "evaluate", lambda path, data, **k: {"accuracy": accuracy[path.rsplit("/", 1)[1]],
                                                                     "correct": correct[path.rsplit("/", 1)[1]]})
    monkeypatch.setattr(finish, "ship", lambda src, dest, target, why: calls.setdefault("ship", (src, dest, target)))
    monkeypatch.setattr(finish, "print_summary", lambda summary: None)
    baseline, candidates = tmp_path / "finetune", [tmp_path / "a", tmp_path / "b"]
    select = SelectConfig(test="/d/test.tsv", test_samples=100)
    summary = finish.finish_run(tmp_path, baseline, candidates, select, BenchConfig(data="/d/dev.tsv"), "cpu")
    assert calls["bench"] == ([baseline, *candidates], str(baseline), tmp_path / "bench.json", True)
    assert calls["ship"] == (Path("/run/stages/layers4-int8-dynamic"), tmp_path / "best", "cpu")
    by_name = {r["name"]: r for r in summary["rows"]}
    assert by_name["layers4-int8-dynamic"]["test_drop_points"] == pytest.approx(2.0)
    assert by_name["finetune"]["test_drop_points"] == 0 and by_name["finetune"]["test_delta"] is None
    delta = by_name["layers4-int8-dynamic"]["test_delta"]  # two rows flipped of 100, the paired interval beside it
    assert delta["difference"] == pytest.approx(-2.0) and delta["rows"] == 100
    assert delta["low"] < -2 < delta["high"] == 0
    assert by_name["layers3-int8-dynamic"]["vs_standard"] == 2.0  # 4 ms for base-int8-dynamic against 2 ms
    assert summary["winner"] == "layers4-int8-dynamic" and summary["report"] == str(tmp_path / "report/report.html")
    assert (tmp_path / "summary.md").read_text().startswith("# bertc optimize\n\nWinner: layers4-int8-dynamic.")


def test_serving_scripts_are_valid_python_for_each_kind_and_target():
    onnx_cuda = finish.serving_script("onnx", "cuda", 64)
    compile(onnx_cuda, "serve.py", "exec")
    assert "providers=['CUDAExecutionProvider', 'CPUExecutionProvider']" in onnx_cuda and "max_length=64" in onnx_cuda
    assert "import bertc" not in onnx_cuda and "from bertc" not in onnx_cuda  # plain onnxruntime: no bertc needed
    assert "providers=['CPUExecutionProvider']" in finish.serving_script("onnx", "cpu", 128)
    # the session options bertc's own sessions (and its bench) use, so serve.py runs as it was measured
    key, value = SPIN_WITHIN_RUNS
    assert f'options.add_session_config_entry("{key}", "{value}")' in onnx_cuda
    torch_script = finish.serving_script("pytorch", "cpu", 128)
    compile(torch_script, "serve.py", "exec")
    assert 'device="cpu"' in torch_script and "from bertc.inference.evaluation import predict" in torch_script


@pytest.fixture
def onnx_winner(tmp_path):
    """An ONNX artifact whose logits are [token count, token id sum]: its label is always the second one."""
    src = tmp_path / "stages" / "layers3-int8-dynamic"
    tokenizer, _ = tiny_tokenizer(src)
    tokenizer.save_pretrained(src)
    onnx.save(counting_graph(), str(src / "model.onnx"))
    (src / "stages-note.txt").write_text("copied too")
    (src / "subdir").mkdir()
    write_manifest(src, stage="quantize", config={}, parent=None, model={"kind": "onnx", "variant": "int8-dynamic"},
                   task={"labels": ["short", "long"], "max_length": 16},
                   extra={"lineage": [{"stage": "finetune", "path": "/run/stages/finetune"}]})
    return src


def test_ship_copies_the_winner_with_labels_readme_and_a_working_serve_script(tmp_path, onnx_winner):
    best = tmp_path / "best"
    best.mkdir()
    (best / "stale.txt").write_text("from an earlier run")
    assert finish.ship(onnx_winner, best, "cpu", "Winner: layers3-int8-dynamic.") == best
    names = {p.name for p in best.iterdir()}
    assert {"model.onnx", "bertc.json", "tokenizer.json", "stages-note.txt", "labels.json", "serve.py",
            "README.md"} <= names
    assert "stale.txt" not in names and "subdir" not in names  # replaced, files only
    assert json.loads((best / "labels.json").read_text()) == {"labels": ["short", "long"],
                                                               "id2label": {"0": "short", "1": "long"}}
    readme = (best / "README.md").read_text()
    assert readme.startswith("# layers3-int8-dynamic, chosen by bertc optimize\n\nWinner: layers3-int8-dynamic.")
    assert "plain onnxruntime and the saved tokenizer" in readme
    assert readme.rstrip().endswith(f"- finetune: /run/stages/finetune\n- quantize: {onnx_winner}")
    done = subprocess.run([sys.executable, str(best / "serve.py"), "good", "the movie"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["long\tgood", "long\tthe movie"]
