"""Readable output: tables of metrics and results, printed with rich."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from bertc.formatting import pct

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
console = Console() if sys.stdout.isatty() else Console(width=120)


def print_classification(report: dict, title: str) -> None:
    """Per-class scores as a table, with the headline figures on their own line (long titles never wrap)."""
    table = Table()
    for column in ("class", "precision %", "recall %", "F1 %", "support"):
        table.add_column(column, justify="right" if column != "class" else "left")
    for label, scores in report["per_class"].items():
        table.add_row(label, pct(scores["precision"]), pct(scores["recall"]), pct(scores["f1"]),
                      str(scores["support"]))
    console.print(title, style="bold", soft_wrap=True)
    console.print(table)
    console.print(f"accuracy {pct(report['accuracy'])}%   macro-F1 {pct(report['macro_f1'])}%   "
                  f"samples {report['samples']}", soft_wrap=True)


def print_confusion(report: dict) -> None:
    console.print("confusion matrix (rows: true class, columns: predicted)", style="bold")
    table = Table()
    table.add_column("")
    for label in report["labels"]:
        table.add_column(label, justify="right")
    for label, row in zip(report["labels"], report["confusion_matrix"]):
        table.add_row(label, *[str(v) for v in row])
    console.print(table)


def key_value_table(values: dict, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(str(key), str(value))
    return table

