"""The end of a `bertc optimize` run: side-by-side bench, report, test accuracy, and the winner shipped to best/.

The bench times every variant at batch 1 and at the batch size served (``SelectConfig.serve_batch``); the winner
is the fastest at the latter within the accuracy budget, whichever runtime it runs in, and ``best/serve.py`` needs
only that runtime (onnxruntime or openvino) and transformers.

Every accuracy difference comes with its paired bootstrap 95% interval, from which rows each model got right on
the selection slice (recorded by the bench) and on the test data (scored here); when the selection slice is too
small for the interval to resolve the budget, the summary says so and about how many rows would.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from rich.table import Table

from bertc.artifact import read_manifest, staging_dir
from bertc.bench.bench import bench
from bertc.bench.config import BenchConfig
from bertc.bench.report import report
from bertc.bench.results import accuracy_delta, delta_text, resolution_text, speedup
from bertc.console import console
from bertc.formatting import pct, points, ratio
from bertc.inference.evaluation import evaluate
from bertc.inference.onnx import SPIN_WITHIN_RUNS
from bertc.optimize.config import SelectConfig
from bertc.optimize.rundir import BENCH_FILE, RECIPE_FILE, SUMMARY_FILE
from bertc.optimize.runtimes import choose_at


def finish_run(out: Path, baseline: Path, candidates: list[Path], select: SelectConfig, bench_config: BenchConfig,
               target: str, searched: list[dict] | None = None, notes: list[str] | None = None) -> dict:
    """Bench the baseline and the candidates side by side, report, score on the test data, ship the winner.
    ``notes``: lines for the summary (what was not measured and why)."""
    console.print(f"benching {len(candidates) + 1} variants side by side on {bench_config.data}", soft_wrap=True)
    batch_sizes = tuple(sorted({*bench_config.batch_sizes, 1, select.serve_batch}))
    bench_config = dataclasses.replace(bench_config, baseline=str(baseline), batch_sizes=batch_sizes)
    results = bench([baseline, *candidates], bench_config, out / BENCH_FILE, overwrite=True)
    report_dir = report([out / BENCH_FILE], out / "report", select.max_accuracy_drop,
                        latency_budget_ms=select.latency_budget_ms, overwrite=True)
    choice = choose_at(results, select.max_accuracy_drop, select.latency_budget_ms, select.serve_batch)
    rows, base = choice["rows"], next(r for r in choice["rows"] if r["baseline"])
    standard = next((r for r in rows if r["name"] == f"base-{'int8-dynamic' if target == 'cpu' else 'fp16'}"), None)
    for row in rows:
        if select.test:
            scored = evaluate(row["path"], select.test, split="test", max_samples=select.test_samples, device=target,
                              per_row=True)
            row.update(test_accuracy=scored["accuracy"], test_correct=scored["correct"])
        # at the serve batch, where the winner is chosen
        row["vs_standard"] = ratio_at_serve_batch(row, standard)
    for row in rows:
        if select.test:
            row["test_drop_points"] = 100 * (base["test_accuracy"] - row["test_accuracy"])
            row["test_delta"] = None if row is base else accuracy_delta(
                {"correct": row["test_correct"]}, {"correct": base["test_correct"]})
    winner = choice["winner"]
    ship(Path(winner["path"]), out / "best", target, choice["text"])
    summary = {"winner": winner["name"], "best": str(out / "best"), "shipped_baseline": choice["shipped_baseline"],
               "text": choice["text"], "rows": rows, "searched": searched or [],
               "report": str(report_dir / "report.html"), "bench": str(out / BENCH_FILE),
               "recipe": str(out / RECIPE_FILE), "test_data": select.test, "serve_batch": select.serve_batch,
               "notes": list(notes or []), "resolution": selection_resolution(rows, winner, select.max_accuracy_drop)}
    (out / SUMMARY_FILE).write_text(summary_markdown(summary, select))
    print_summary(summary)
    return summary


def ratio_at_serve_batch(row: dict, standard: dict | None) -> float | None:
    """How much faster ``row`` is than the standard recipe at the serve batch (median of per-round ratios)."""
    if standard is None:
        return None
    if "serve_round_p50_ms" not in row:  # rows chosen at batch 1 only
        return speedup(row, standard)["speedup"]
    return speedup({"round_p50_ms": row["serve_round_p50_ms"]}, {"round_p50_ms": standard["serve_round_p50_ms"]})[
        "speedup"]


def selection_resolution(rows: list[dict], winner: dict, budget: float) -> str | None:
    """The line saying the selection slice cannot resolve the budget (None when it can): for the shipped model, or
    when the baseline is shipped, for the least resolved candidate."""
    compared = [winner] if not winner["baseline"] else [row for row in rows if not row["baseline"]]
    return resolution_text([row.get("selection_delta") for row in compared], budget, "the selection slice")


def shipped_line(summary: dict) -> str:
    """The shipped model's accuracy on the selection slice and, beside it, on the test data, each with its
    difference from the fine-tuned model and that difference's 95% interval."""
    row = next(r for r in summary["rows"] if r["name"] == summary["winner"])
    if row["baseline"]:
        figures = [f"selection {pct(row['accuracy'])}%"]
        figures += [f"test {pct(row['test_accuracy'])}%"] if row.get("test_accuracy") is not None else []
        return f"shipped {row['name']} (the fine-tuned model): " + ", ".join(figures)
    figures = [accuracy_figure("selection", row["accuracy"], row.get("selection_delta"), gain(row["drop_points"]))]
    if row.get("test_accuracy") is not None:
        figures.append(accuracy_figure("test", row["test_accuracy"], row.get("test_delta"),
                                       gain(row.get("test_drop_points"))))
    else:
        figures.append("test: not measured (no --test data)")
    return f"shipped {row['name']}: " + "; ".join(figures) + " (Δ: points against the fine-tuned model, 95% interval)"


def accuracy_figure(where: str, accuracy: float | None, delta: dict | None, points: float | None) -> str:
    rows = f" on {delta['rows']:,} rows" if delta else ""
    return f"{where} {pct(accuracy)}%{rows}, Δ {delta_text(delta, points)}"


def not_shipped(searched: list[dict]) -> list[tuple[str, str, str]]:
    """(name, status, reason) of every deployable searched that has a reason: skipped, failed or over budget."""
    found = []
    for record in searched:
        for entry in [record, *record.get("openvino", [])]:
            if entry.get("reason"):
                found.append((entry["name"], entry["status"], entry["reason"]))
    return found


def summary_markdown(summary: dict, select: SelectConfig) -> str:
    header, lines = summary_rows(summary)
    text = ["# bertc optimize", "", summary["text"], "", shipped_line(summary), ""]
    if summary.get("resolution"):
        text += [f"Note: {summary['resolution']}.", ""]
    text += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(line) + " |" for line in lines]
    notes = [f"- {name}: {status} ({reason})" for name, status, reason in not_shipped(summary["searched"])]
    if notes:
        text += ["", "Candidates not shipped:", "", *notes]
    if summary.get("notes"):
        text += ["", *summary["notes"]]
    serve = summary.get("serve_batch", 1)
    latency = "p50 at batch 1 with real lengths" + (
        f"; @{serve}: p50 per batch of {serve} and rows per second, where the winner is chosen" if serve > 1 else "")
    text += ["", "Δ: accuracy points against the fine-tuned model, with the paired bootstrap 95% interval in "
             "brackets (both models' per-row correctness on the same rows). "
             f"Selection: accuracy on the selection slice, budget {points(select.max_accuracy_drop)}. "
             f"Test: {summary['test_data'] or 'no test data given'}. Latency: {latency}. "
             f"Report: {summary['report']}. Recipe: {summary['recipe']}.", ""]
    return "\n".join(text)


def gain(drop_points: float | None) -> float | None:
    return None if drop_points is None else -drop_points


def summary_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The table: every variant with its runtime; at a serve batch above 1, its figures there too."""
    serve = summary.get("serve_batch", 1)
    at_serve = [f"p50 ms @{serve}", f"rows/s @{serve}", f"vs fine-tuned @{serve}"] if serve > 1 else []
    header = ["variant", "runtime", "selection %", "Δ (95% CI)", "test %", "Δ (95% CI)", "p50 ms", "vs fine-tuned",
              *at_serve, "vs standard", ""]
    lines = []
    for row in summary["rows"]:
        mark = "baseline" if row["baseline"] else ("over budget" if not row["within_budget"] else "")
        if row["name"] == summary["winner"]:
            mark = "shipped" if not mark else f"{mark}, shipped"
        figures = [f"{row['serve_p50_ms']:.3g}", number(row.get("serve_throughput")),
                   ratio(row.get("serve_speedup"))] if serve > 1 else []
        lines.append([row["name"], row.get("runtime", "-"), pct(row["accuracy"]),
                      delta_text(row.get("selection_delta"), gain(row["drop_points"])), pct(row.get("test_accuracy")),
                      delta_text(row.get("test_delta"), gain(row.get("test_drop_points"))),
                      f"{row['p50_ms']:.3g}", ratio(row["speedup"]), *figures, ratio(row.get("vs_standard")), mark])
    return header, lines


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_summary(summary: dict) -> None:
    header, lines = summary_rows(summary)
    table = Table(title="bertc optimize")
    for column in header:
        table.add_column(column, justify="left" if column in ("variant", "runtime", "") else "right",
                         overflow="fold", no_wrap=column == "variant" or column.startswith("Δ"))
    for line in lines:
        table.add_row(*line)
    console.print(table)
    for name, status, reason in not_shipped(summary["searched"]):
        console.print(f"  {name}: {status} ({reason})", style="dim", soft_wrap=True)
    for note in summary.get("notes", []):
        console.print(note, style="yellow", soft_wrap=True)
    console.print(summary["text"], soft_wrap=True)
    console.print(shipped_line(summary), soft_wrap=True)
    if summary.get("resolution"):
        console.print(f"note: {summary['resolution']}", style="yellow", soft_wrap=True)
    console.print(f"best model: {summary['best']} (serve it: python {summary['best']}/serve.py \"some text\")",
                  soft_wrap=True)
    console.print(f"report: {summary['report']}   recipe: {summary['recipe']}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------- shipping

def ship(src: Path, dest: Path, target: str, why: str) -> Path:
    """Copy the winner to ``dest`` with its label map, a serving script and a README; replaces ``dest``."""
    manifest = read_manifest(src)
    labels = manifest["task"]["labels"]
    kind = manifest["model"].get("kind", "pytorch")
    with staging_dir(dest, overwrite=True) as tmp:
        for file in src.iterdir():
            if file.is_file():
                shutil.copy2(file, tmp / file.name)
        (tmp / "labels.json").write_text(json.dumps(
            {"labels": labels, "id2label": {str(i): label for i, label in enumerate(labels)}}, indent=2) + "\n")
        (tmp / "serve.py").write_text(serving_script(kind, target, manifest["task"].get("max_length") or 128,
                                                     manifest["model"].get("inference_precision") or "f32",
                                                     manifest["model"].get("file") or "model.xml"))
        lineage = [f"- {step.get('stage')}: {step.get('path')}" for step in manifest.get("lineage", [])]
        (tmp / "README.md").write_text("\n".join([
            f"# {src.name}, chosen by bertc optimize", "", why, "",
            f"A copy of `{src}` ({kind} {manifest['model'].get('variant') or ''}, for {target}).", "",
            "    python serve.py \"a gripping, beautifully acted film\" \"the plot is thin\"", "",
            "prints one label per text" + SERVED_WITH.get(kind, " (with bertc's loader)."),
            "`labels.json` maps output indices to labels; `bertc.json` is the manifest.", "",
            "Lineage, oldest first:", "", *lineage, f"- {manifest.get('stage')}: {src}", ""]))
    return dest


ONNX_SERVE = '''\
"""Serve the model bertc optimize chose: plain onnxruntime and the saved tokenizer, no bertc needed.

    python serve.py "a gripping, beautifully acted film" "the plot is thin and the jokes fall flat"
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent
tokenizer = AutoTokenizer.from_pretrained(HERE)  # right padding: the fused attention expects it
labels = json.loads((HERE / "labels.json").read_text())["labels"]
options = ort.SessionOptions()
options.add_session_config_entry("{spin_key}", "{spin_value}")  # threads spin only while a call runs
session = ort.InferenceSession(str(HERE / "model.onnx"), options, providers={providers})
input_names = [i.name for i in session.get_inputs()]


def classify(texts):
    encoded = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="np")
    logits = session.run(["logits"], {{name: encoded[name].astype(np.int64) for name in input_names}})[0]
    return [labels[i] for i in logits.argmax(-1)]


if __name__ == "__main__":
    texts = sys.argv[1:] or ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    for text, label in zip(texts, classify(texts)):
        print(f"{{label}}\\t{{text}}")
'''

OPENVINO_SERVE = '''\
"""Serve the model bertc optimize chose: OpenVINO and the saved tokenizer; needs only openvino and transformers.

    python serve.py "a gripping, beautifully acted film" "the plot is thin and the jokes fall flat"
"""
import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent
tokenizer = AutoTokenizer.from_pretrained(HERE)
labels = json.loads((HERE / "labels.json").read_text())["labels"]
# The precision the model was measured at, set explicitly: on CPUs with bf16 OpenVINO would otherwise run an f32
# model in bf16. One stream with the latency hint: one request at a time gets every core.
model = ov.Core().compile_model(str(HERE / "{model_file}"), "CPU", {{"INFERENCE_PRECISION_HINT": "{precision}",
                                                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}})
request = model.create_infer_request()
input_names = [port.get_any_name() for port in model.inputs]


def classify(texts):
    encoded = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="np")
    logits = request.infer({{name: encoded[name].astype(np.int64) for name in input_names}})[model.output(0)]
    return [labels[i] for i in logits.argmax(-1)]


if __name__ == "__main__":
    texts = sys.argv[1:] or ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    for text, label in zip(texts, classify(texts)):
        print(f"{{label}}\\t{{text}}")
'''

TORCH_SERVE = '''\
"""Serve the model bertc optimize chose (a PyTorch artifact: nothing beat it within the accuracy budget).

    python serve.py "a gripping, beautifully acted film" "the plot is thin and the jokes fall flat"
"""
import sys
from pathlib import Path

from bertc.inference.evaluation import predict

HERE = Path(__file__).resolve().parent


def classify(texts):
    return [row["label"] for row in predict(HERE, texts, device="{device}")]


if __name__ == "__main__":
    texts = sys.argv[1:] or ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    for text, label in zip(texts, classify(texts)):
        print(f"{{label}}\\t{{text}}")
'''


SERVED_WITH = {"onnx": " with plain onnxruntime and the saved tokenizer (bertc is not needed).",
               "openvino": " with plain OpenVINO and the saved tokenizer: it needs only openvino and transformers "
                           "(bertc is not needed)."}


def serving_script(kind: str, target: str, max_length: int, precision: str = "f32",
                   model_file: str = "model.xml") -> str:
    """``serve.py`` for a model of ``kind``: onnxruntime, OpenVINO (``model_file`` at its inference
    ``precision``) or bertc's loader for PyTorch."""
    if kind == "openvino":
        return OPENVINO_SERVE.format(precision=precision, max_length=max_length, model_file=model_file)
    if kind == "onnx":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if target == "cuda" else ["CPUExecutionProvider"]
        spin_key, spin_value = SPIN_WITHIN_RUNS  # as bertc's own sessions, so serve.py runs as it was benched
        return ONNX_SERVE.format(providers=providers, max_length=max_length, spin_key=spin_key, spin_value=spin_value)
    return TORCH_SERVE.format(device=target)
