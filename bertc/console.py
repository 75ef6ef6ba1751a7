"""Readable output: tables of metrics and results, printed with rich."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def classification_table(report: dict, title: str) -> Table:
    table = Table(title=title)
    for column in ("class", "precision %", "recall %", "F1 %", "support"):
        table.add_column(column, justify="right" if column != "class" else "left")
    for label, scores in report["per_class"].items():
        table.add_row(label, pct(scores["precision"]), pct(scores["recall"]), pct(scores["f1"]),
                      str(scores["support"]))
    table.caption = (f"accuracy {pct(report['accuracy'])}%   macro-F1 {pct(report['macro_f1'])}%   "
                     f"samples {report['samples']}")
    return table


def confusion_table(report: dict) -> Table:
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for label in report["labels"]:
        table.add_column(label, justify="right")
    for label, row in zip(report["labels"], report["confusion_matrix"]):
        table.add_row(label, *[str(v) for v in row])
    return table


def key_value_table(values: dict, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(str(key), str(value))
    return table


def write_json(path: Path | str, data) -> None:
    from bertc.artifact import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    tmp.replace(path)
