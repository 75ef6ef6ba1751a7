"""The end of a `bertc optimize` run: side-by-side bench, report, test accuracy, and the winner shipped to best/."""

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
from bertc.bench.results import speedup
from bertc.console import console
from bertc.formatting import pct, points, ratio, signed
from bertc.inference.evaluation import evaluate
from bertc.optimize.config import SelectConfig
from bertc.optimize.rundir import BENCH_FILE, RECIPE_FILE, SUMMARY_FILE
from bertc.optimize.search import choose


def finish_run(out: Path, baseline: Path, candidates: list[Path], select: SelectConfig, bench_config: BenchConfig,
               target: str, searched: list[dict] | None = None) -> dict:
    """Bench the baseline and the candidates side by side, report, score on the test data, ship the winner."""
    console.print(f"benching {len(candidates) + 1} variants side by side on {bench_config.data}", soft_wrap=True)
    bench_config = dataclasses.replace(bench_config, baseline=str(baseline))
    results = bench([baseline, *candidates], bench_config, out / BENCH_FILE, overwrite=True)
    report_dir = report([out / BENCH_FILE], out / "report", select.max_accuracy_drop,
                        latency_budget_ms=select.latency_budget_ms, overwrite=True)
    choice = choose(results, select.max_accuracy_drop, select.latency_budget_ms)
    rows, base = choice["rows"], next(r for r in choice["rows"] if r["baseline"])
    standard = next((r for r in rows if r["name"] == f"base-{'int8-dynamic' if target == 'cpu' else 'fp16'}"), None)
    for row in rows:
        if select.test:
            row["test_accuracy"] = evaluate(row["path"], select.test, split="test", max_samples=select.test_samples,
                                            device=target)["accuracy"]
        row["vs_standard"] = speedup(row, standard)["speedup"] if standard else None
    for row in rows:
        if select.test:
            row["test_drop_points"] = 100 * (base["test_accuracy"] - row["test_accuracy"])
    winner = choice["winner"]
    ship(Path(winner["path"]), out / "best", target, choice["text"])
    summary = {"winner": winner["name"], "best": str(out / "best"), "shipped_baseline": choice["shipped_baseline"],
               "text": choice["text"], "rows": rows, "searched": searched or [],
               "report": str(report_dir / "report.html"), "bench": str(out / BENCH_FILE),
               "recipe": str(out / RECIPE_FILE), "test_data": select.test}
    (out / SUMMARY_FILE).write_text(summary_markdown(summary, select))
    print_summary(summary)
    return summary


def summary_markdown(summary: dict, select: SelectConfig) -> str:
    header, lines = summary_rows(summary)
    text = ["# bertc optimize", "", summary["text"], "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(line) + " |" for line in lines]
    notes = [f"- {s['name']}: {s['status']} ({s['reason']})" for s in summary["searched"] if s.get("reason")]
    if notes:
        text += ["", "Candidates not shipped:", "", *notes]
    text += ["", "Δ: accuracy points against the fine-tuned model. "
             f"Selection: accuracy on the selection slice, budget {points(select.max_accuracy_drop)}. "
             f"Test: {summary['test_data'] or 'no test data given'}. Latency: p50 at batch 1 with real lengths. "
             f"Report: {summary['report']}. Recipe: {summary['recipe']}.", ""]
    return "\n".join(text)


def gain(drop_points: float | None) -> float | None:
    return None if drop_points is None else -drop_points


def summary_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "selection %", "Δ", "test %", "Δ", "p50 ms", "vs fine-tuned", "vs standard", ""]
    lines = []
    for row in summary["rows"]:
        mark = "baseline" if row["baseline"] else ("over budget" if not row["within_budget"] else "")
        if row["name"] == summary["winner"]:
            mark = "shipped" if not mark else f"{mark}, shipped"
        lines.append([row["name"], pct(row["accuracy"]), signed(gain(row["drop_points"])),
                      pct(row.get("test_accuracy")), signed(gain(row.get("test_drop_points"))),
                      f"{row['p50_ms']:.3g}", ratio(row["speedup"]), ratio(row.get("vs_standard")), mark])
    return header, lines


def print_summary(summary: dict) -> None:
    header, lines = summary_rows(summary)
    table = Table(title="bertc optimize")
    for column in header:
        table.add_column(column, justify="left" if column in ("variant", "") else "right",
                         overflow="fold", no_wrap=column == "variant")
    for line in lines:
        table.add_row(*line)
    console.print(table)
    for searched in summary["searched"]:
        if searched.get("reason"):
            console.print(f"  {searched['name']}: {searched['status']} ({searched['reason']})", style="dim",
                          soft_wrap=True)
    console.print(summary["text"], soft_wrap=True)
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
        (tmp / "serve.py").write_text(serving_script(kind, target, manifest["task"].get("max_length") or 128))
        lineage = [f"- {step.get('stage')}: {step.get('path')}" for step in manifest.get("lineage", [])]
        (tmp / "README.md").write_text("\n".join([
            f"# {src.name}, chosen by bertc optimize", "", why, "",
            f"A copy of `{src}` ({kind} {manifest['model'].get('variant') or ''}, for {target}).", "",
            "    python serve.py \"a gripping, beautifully acted film\" \"the plot is thin\"", "",
            "prints one label per text" + (" with plain onnxruntime and the saved tokenizer (bertc is not needed)."
                                          if kind == "onnx" else " (with bertc's loader)."),
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
session = ort.InferenceSession(str(HERE / "model.onnx"), providers={providers})
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


def serving_script(kind: str, target: str, max_length: int) -> str:
    if kind == "onnx":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if target == "cuda" else ["CPUExecutionProvider"]
        return ONNX_SERVE.format(providers=providers, max_length=max_length)
    return TORCH_SERVE.format(device=target)
