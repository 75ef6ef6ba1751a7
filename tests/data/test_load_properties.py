"""Property-based tests of the data loaders: any table a user may hand over loads with counted cleaning, or fails
with one line (a BertcError), never another exception; a table with a regular layout (text and label columns,
a row with both) always loads."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertc.data.clean import CleaningReport, clean
from bertc.data.config import Columns
from bertc.data.load import read_dataset, read_texts
from bertc.errors import BertcError

SETTINGS = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NAMES = st.sampled_from(["sentence", "text", "label", "sentence1", "sentence2", "y", "body", "", "label ", "ünï"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
CELL = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "\t", '"', "'", "a,b", 'he said "no"', "\n", "nan", "NaN", "None", "null", "1.0",
                     "0", "-1", "inf", "ｔｅｘｔ", "🙂"]),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)


LAYOUTS = {  # the columns of a regular table, and the text, pair and label columns bertc finds in it
    ("sentence", "label"): {"text": "sentence", "pair": None, "label": "label"},
    ("text", "label"): {"text": "text", "pair": None, "label": "label"},
    ("sentence1", "sentence2", "label"): {"text": "sentence1", "pair": "sentence2", "label": "label"},
    ("label", "text", "extra"): {"text": "text", "pair": None, "label": "label"},
}


@st.composite
def tables(draw):
    layouts = st.sampled_from([list(layout) for layout in LAYOUTS])  # most tables have columns bertc finds
    columns = draw(st.one_of(layouts, layouts, st.lists(NAMES, min_size=1, max_size=4)))
    rows = draw(st.lists(st.lists(CELL, min_size=len(columns), max_size=len(columns)), max_size=8))
    return columns, rows


def cell_text(value) -> str:
    return "" if value is None else str(value)


def write(path: Path, columns: list[str], rows: list[list]) -> None:
    if path.suffix == ".tsv":  # written as a user's editor would: no quoting, whatever the cells hold
        lines = ["\t".join(columns)] + ["\t".join(cell_text(v) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([[cell_text(v) for v in row] for row in rows])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    else:  # jsonl, NaN and Infinity as Python's json writes them
        path.write_text("".join(json.dumps(dict(zip(columns, row))) + "\n" for row in rows), encoding="utf-8")


def missing_label(value) -> bool:
    """What the loaders read as no label: nothing, an empty or "nan" cell, a number that is not finite."""
    return value is None or (isinstance(value, float) and not math.isfinite(value)) or \
        (isinstance(value, str) and value.strip().lower() in ("", "nan"))


def usable_text(value) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and bool(value.split()))


def regular_columns(columns: list[str], rows: list[list], ext: str) -> dict | None:
    """The columns bertc must find in a table with a regular layout, else None: a text and a label column, at
    least one row with text (and second text) and a label, and, in a TSV, which has no quoting, no cell that
    breaks its line or adds a column."""
    found = LAYOUTS.get(tuple(columns))
    if found is None:
        return None
    if ext == ".tsv" and any(any(mark in cell_text(v) for mark in "\t\n\r") for row in rows for v in row):
        return None
    where = {name: i for i, name in enumerate(columns)}
    texts = [where[found["text"]]] + ([where[found["pair"]]] if found["pair"] else [])
    if not any(all(usable_text(row[i]) for i in texts) and not missing_label(row[where["label"]]) for row in rows):
        return None
    return found


def one_line(error: BertcError) -> None:
    message = str(error)
    assert message and "\n" not in message, message


def check_loaded(dataset) -> CleaningReport:
    assert len(dataset.texts) == len(dataset.labels)
    assert dataset.pairs is None or len(dataset.pairs) == len(dataset.texts)
    assert all(t is None or isinstance(t, str) for t in dataset.texts)
    for label in dataset.labels:
        assert label is None or isinstance(label, (int, str))
        assert not (isinstance(label, str) and label.strip().lower() == "nan")  # NaN is a missing label
    assert all(isinstance(label, int) for label in dataset.labels if label is not None) or \
        all(isinstance(label, str) for label in dataset.labels if label is not None)  # one kind of label
    cleaned, report = clean(dataset)
    assert report.rows_in == len(dataset)
    assert report.rows_out == len(cleaned) == \
        report.rows_in - report.empty_text - report.missing_label - report.duplicates
    assert all(text and text == " ".join(text.split()) for text in cleaned.texts)
    assert None not in cleaned.labels
    return report


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".jsonl"])
@SETTINGS
@given(table=tables())
def test_any_table_loads_with_counted_cleaning_or_fails_in_one_line(ext, table):
    columns, rows = table
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{ext}"
        write(path, columns, rows)
        regular = regular_columns(columns, rows, ext)
        try:
            dataset = read_dataset(path)
        except BertcError as err:
            one_line(err)
            assert regular is None, f"a table with a regular layout was refused: {err}"
        else:
            report = check_loaded(dataset)
            if regular is not None:  # every row read back, and the usable one kept
                assert dataset.columns == regular and report.rows_in == len(rows) and report.rows_out >= 1
        try:
            texts, pairs = read_texts(str(path))
        except BertcError as err:
            one_line(err)
            assert regular is None, f"a table with a regular layout was refused: {err}"
        else:
            assert all(isinstance(text, str) for text in texts)
            assert pairs is None or (len(pairs) == len(texts) and all(isinstance(p, str) for p in pairs))
            if regular is not None:
                assert len(texts) == len(rows) and (pairs is not None) == (regular["pair"] is not None)


@SETTINGS
@given(labels=st.lists(st.one_of(st.integers(-2, 3), st.floats(allow_nan=True, allow_infinity=True),
                                 st.sampled_from(["1", "1.0", "0", "nan", "pos", ""]), st.none()), max_size=10))
def test_numbers_and_nan_in_the_label_column(labels):
    """Equal numbers are one class however written; NaN, infinity and empty cells are missing labels."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_text("".join(json.dumps({"text": f"text {i}", "label": label}) + "\n"
                                for i, label in enumerate(labels)))
        labelled = sum(not missing_label(raw) for raw in labels)
        try:
            dataset = read_dataset(path, Columns(text="text", label="label"))
        except BertcError as err:
            one_line(err)
            assert not labelled, f"a table with a labelled row was refused: {err}"  # only an empty file may fail
            return
    report = check_loaded(dataset)
    assert report.rows_in == len(labels) and report.missing_label == len(labels) - labelled
    assert report.rows_out == labelled and report.empty_text == report.duplicates == 0  # every text differs
    for raw, label in zip(labels, dataset.labels):
        assert (label is None) == missing_label(raw), (raw, label)
