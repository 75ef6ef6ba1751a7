"""What the commands print: training and compression summaries, evaluation reports, predictions, bench tables."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from bertc.artifact import check_writable_file, is_artifact, read_manifest
from bertc.bench.report import console_tables
from bertc.console import console, key_value_table, print_classification, print_confusion
from bertc.data.config import Columns
from bertc.errors import BertcError
from bertc.formatting import pct
from bertc.inference.evaluation import evaluate, predict, prediction_texts, task_columns
from bertc.inference.registry import model_manifest
from bertc.jsonio import write_json


def show_training(path: Path) -> None:
    if not is_artifact(path):  # non-zero ranks of a distributed run
        return
    manifest = read_manifest(path)
    metrics = manifest["metrics"]
    if "search" in manifest:
        console.print(search_table(manifest["search"]))
    if "training" in metrics:
        console.print(key_value_table(metrics["training"], "training"))
    if "eval" in metrics:
        print_classification(metrics["eval"], f"evaluation on {manifest['task']['data'].get('eval_source')}")
    console.print(f"wrote {path}", soft_wrap=True)


def search_table(search: dict) -> Table:
    """Every trial of `bertc finetune --search`, the best marked."""
    table = Table(title=f"search of {search['space']} on {search['train_rows']} training rows")
    for column in ("trial", "state", "options", "eval acc %", "evaluations", "seconds"):
        table.add_column(column, justify="right" if column in ("eval acc %", "evaluations", "seconds") else "left")
    for trial in search["trials"]:
        mark = " (best)" if trial["trial"] == search["best"]["trial"] else ""
        options = ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                            for name, value in trial["params"].items())
        table.add_row(f"{trial['trial']}{mark}", trial["state"], options, pct(trial["eval_accuracy"]),
                      str(trial["evaluations"]), f"{trial['seconds']:.1f}" if trial["seconds"] is not None else "-")
    return table


def show_import(path: Path) -> None:
    manifest = read_manifest(path)
    model, task = manifest["model"], manifest["task"]
    rows = {"source": manifest.get("source_model"), "model": f"{model['model_type']} ({model['architecture']})",
            "layers": model["num_layers"], "parameters": f"{model['num_parameters']:,}",
            "labels": ", ".join(map(str, task["labels"])), "max length": task["max_length"]}
    console.print(key_value_table(rows, "imported"))
    console.print(f"wrote {path}; give later stages their data (--data, --train): it records none", soft_wrap=True)


def show_compression(path: Path) -> None:
    if not is_artifact(path):  # non-zero ranks of a distributed run
        return
    manifest = read_manifest(path)
    compression, metrics = manifest.get("compression", {}), manifest["metrics"]
    before, after, ratios = compression.get("before"), compression.get("after"), compression.get("ratios")
    if before and after:
        rows = {key: f"{before[key]:,} -> {after[key]:,} (x{ratios[key]:.3f})"
                for key in ("num_parameters", "encoder_parameters", "flops")}
        rows["heads per layer"] = f"{before['heads_per_layer']} -> {after['heads_per_layer']}"
        rows["FFN per layer"] = f"{before['ffn_per_layer']} -> {after['ffn_per_layer']}"
        for key, name in (("hidden_size", "hidden size"), ("vocab_size", "vocabulary"),
                          ("max_position_embeddings", "positions")):
            if before.get(key) != after.get(key):
                rows[name] = f"{before.get(key):,} -> {after.get(key):,}"
        if activation := compression.get("activation"):
            rows["FFN activation"] = f"{activation['from']} -> {activation['to']}"
        console.print(key_value_table(rows, f"size (FLOPs at {after['flops_seq_len']} tokens)"))
    for step in metrics.get("steps", []):
        recovered = (step.get("recovery") or {}).get("best_eval_accuracy")
        console.print(f"pruning step {step['step']}: eval accuracy {pct(step.get('eval_accuracy_after_pruning'))}% "
                      f"after pruning" + (f", {pct(recovered)}% after recovery" if recovered is not None else ""))
    if "training" in metrics:
        console.print(key_value_table(metrics["training"], "training"))
    if "eval" in metrics:
        print_classification(metrics["eval"], f"evaluation on {metrics['eval'].get('data')}")
    console.print(f"wrote {path}", soft_wrap=True)


def evaluate_and_show(artifact: Path, data: str, text_column: str | None, text_pair_column: str | None,
                      label_column: str | None, split: str, max_samples: int | None, device: str, batch_size: int,
                      json_out: Path | None) -> None:
    if json_out:
        check_writable_file(json_out, "--json")
    columns = task_columns(model_manifest(artifact)[1], text_column, text_pair_column, label_column)
    report = evaluate(artifact, data, columns=Columns(columns.text, columns.pair, columns.label), split=split,
                      max_samples=max_samples, device=device, batch_size=batch_size)
    dropped = report.get("dropped_rows") or {}
    if any(dropped.values()):
        console.print(f"scored {report['samples']} rows; left out {dropped['empty_text']} with no text and "
                      f"{dropped['missing_label']} with no label", soft_wrap=True)
    print_classification(report, f"{artifact} on {report['data']}")
    print_confusion(report)
    if json_out:
        write_json(json_out, report)
        console.print(f"wrote {json_out}", soft_wrap=True)


def predict_and_show(artifact: Path, texts: list[str] | None, pairs: list[str] | None, data: str | None,
                     text_column: str | None, text_pair_column: str | None, device: str, batch_size: int,
                     json_out: Path | None) -> None:
    if json_out:
        check_writable_file(json_out, "--json")
    if data is not None:
        if texts or pairs:
            raise BertcError("give texts (with --pair) or --data PATH, not both")
        task = model_manifest(artifact)[1].get("task", {})
        texts, pairs = prediction_texts(data, task, text_column, text_pair_column)
    elif text_column or text_pair_column:
        raise BertcError("--text-column and --text-pair-column name columns of --data PATH; give --data too")
    results = predict(artifact, list(texts or []), list(pairs) if pairs else None, device=device,
                      batch_size=batch_size)
    warn_empty(results, pairs)
    if json_out:
        write_json(json_out, results)
    table = Table("label", "probability", "text")
    for row in results[:50]:
        table.add_row(str(row["label"]), f"{row['probabilities'][str(row['label'])]:.3f}", row["text"][:100])
    console.print(table)
    if len(results) > 50:
        console.print(f"... {len(results) - 50} more" + (f" in {json_out}" if json_out else " (use --json)"))


def warn_empty(results: list[dict], pairs: list[str] | None) -> None:
    """A label for an empty text is the model's guess from nothing: say so, once for all of them."""
    empty = [i + 1 for i, row in enumerate(results)
             if not row["text"].strip() or (pairs is not None and not pairs[i].strip())]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        console.print(f"warning: {len(empty)} of {len(results)} texts are empty (number {shown}); their labels "
                      "are guesses from no text", style="yellow", soft_wrap=True)


def show_bench(results: dict, out: Path) -> None:
    for table in console_tables(results):
        console.print(table)
    console.print(f"wrote {out}")
