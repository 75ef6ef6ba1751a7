"""Readable output: the classification table, the confusion matrix and key-value tables, as printed."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bertc import console as console_module
from bertc.console import key_value_table, print_classification, print_confusion
from bertc.metrics import classification_report


@pytest.fixture
def printed(monkeypatch):
    """What bertc.console prints, as plain text (80 columns, no colour)."""
    out = io.StringIO()
    monkeypatch.setattr(console_module, "console", Console(file=out, width=80, color_system=None))
    return out


REPORT = classification_report([0, 0, 0, 0, 1, 1], [0, 0, 0, 2, 0, 0], ["negative", "neutral", "positive"])


def rows(text: str) -> list[list[str]]:
    """Table rows as lists of cells (rich draws cells between vertical bars)."""
    return [[cell.strip() for cell in line.strip().strip("│┃").split("│" if "│" in line else "┃")]
            for line in text.splitlines() if line.strip().startswith(("│", "┃"))]


def test_classification_table_has_a_row_per_class_and_the_headline(printed):
    print_classification(REPORT, "validation: tiny.tsv")
    text = printed.getvalue()
    assert text.splitlines()[0] == "validation: tiny.tsv"
    table = rows(text)
    assert table[0] == ["class", "precision %", "recall %", "F1 %", "support"]
    assert table[1:] == [["negative", "60.00", "75.00", "66.67", "4"], ["neutral", "0.00", "0.00", "0.00", "2"],
                         ["positive", "0.00", "0.00", "0.00", "0"]]
    assert text.splitlines()[-1] == "accuracy 50.00%   macro-F1 33.33%   samples 6"


def test_a_long_title_stays_on_one_line(printed):
    title = "evaluation of " + "/very/long/path" * 10 + "/model on data.tsv"
    print_classification(REPORT, title)
    assert title in printed.getvalue().splitlines()


def test_confusion_matrix_rows_are_true_classes_columns_predicted(printed):
    print_confusion(REPORT)
    text = printed.getvalue()
    assert text.splitlines()[0] == "confusion matrix (rows: true class, columns: predicted)"
    assert rows(text) == [["", "negative", "neutral", "positive"], ["negative", "3", "0", "1"],
                          ["neutral", "2", "0", "0"], ["positive", "0", "0", "0"]]


def test_key_value_table_rounds_floats_to_four_significant_digits():
    table = key_value_table({"lr": 0.000123456, "steps": 90, "loss": 0.5, "name": "tiny"}, "training")
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table)
    text = out.getvalue()
    assert text.splitlines()[0].strip() == "training"
    assert rows(text) == [["lr", "0.0001235"], ["steps", "90"], ["loss", "0.5"], ["name", "tiny"]]


def test_piped_output_is_wide():
    done = subprocess.run([sys.executable, "-c", "from bertc.console import console; print(console.width)"],
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    assert done.stdout.strip() == "120"
