import json

import pandas as pd
import pytest

from bertc.data.config import Columns
from bertc.data.labels import align_labels
from bertc.data.load import parse_labels, read_dataset, read_texts
from bertc.errors import BertcError

ROWS = [("a fine film", "pos"), ("dull  plot", "neg"), ('he said "no"', "neg")]


def test_tsv_keeps_quotes_and_detects_columns(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tlabel\n" + "\n".join(f"{t}\t{y}" for t, y in ROWS) + "\n")
    data = read_dataset(path)
    assert data.texts[2] == 'he said "no"'
    assert data.labels == ["pos", "neg", "neg"]
    assert data.columns == {"text": "sentence", "pair": None, "label": "label"}


@pytest.mark.parametrize("ext", ["csv", "jsonl", "json", "parquet"])
def test_other_formats_read_the_same_rows(tmp_path, ext):
    frame = pd.DataFrame({"review": [t for t, _ in ROWS], "y": [1, 0, 0]})
    path = tmp_path / f"d.{ext}"
    if ext == "csv":
        frame.to_csv(path, index=False)
    elif ext == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif ext == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path)
    data = read_dataset(path, Columns(text="review", label="y"))
    assert data.texts == [t for t, _ in ROWS]
    assert data.labels == [1, 0, 0]


def test_integer_labels_read_from_text_become_ints(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nx,2\ny,10\n")
    assert read_dataset(path).labels == [2, 10]


def test_pair_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence1,sentence2,label\na b,c d,entail\ne f,g h,contradict\n")
    data = read_dataset(path)
    assert data.pairs == ["c d", "g h"]
    assert data.columns["pair"] == "sentence2"


def test_directory_of_splits(tiny_data):
    assert read_dataset(tiny_data, split="validation").source.endswith("validation.tsv")
    assert len(read_dataset(tiny_data, split="train")) == 240


def test_unknown_column_names_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nx,1\n")
    with pytest.raises(BertcError, match="column 'body' not found.*text, label"):
        read_dataset(path, Columns(text="body"))


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(BertcError, match="does not exist"):
        read_dataset(tmp_path / "nope.tsv")
    (tmp_path / "d.xml").write_text("<x/>")
    with pytest.raises(BertcError, match="unsupported extension"):
        read_dataset(tmp_path / "d.xml")


def test_real_sst2_reads_every_row(sst2):
    train = read_dataset(sst2 / "train.tsv")
    assert len(train) == 60614
    assert set(train.labels) == {0, 1}
    assert len(read_dataset(sst2 / "test.tsv")) == 872


def test_hub_dataset_id_uses_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(repo, subset=None):
        calls.append((repo, subset))
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]}),
            "validation": datasets.Dataset.from_dict({"sentence": ["c"], "label": [1]}),
            "test": datasets.Dataset.from_dict({"sentence": ["d"], "label": [-1]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert read_dataset("glue/sst2", split="validation").texts == ["c"]
    assert calls == [("glue", "sst2")]
    assert read_dataset("glue/sst2", split="test").texts == ["c"]  # unlabelled test split: GLUE's dev set


def test_integer_labels_written_as_floats_are_the_same_classes(tmp_path):
    # pandas writes an integer column with a missing value as 1.0/0.0; it must still be classes 0 and 1.
    frame = pd.DataFrame({"text": ["good", "bad", "fine", "meh"], "label": [1, 0, 1, None]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "eval.csv").write_text("text,label\ngreat,1\nawful,0\n")
    train, evaluation = read_dataset(tmp_path / "train.csv"), read_dataset(tmp_path / "eval.csv")
    assert train.labels == [1, 0, 1, None]
    assert set(evaluation.labels) == {label for label in train.labels if label is not None}


def test_equal_numeric_labels_take_the_most_common_spelling():

    assert parse_labels(["0.5", "0.50", "0.50", "1"]) == ["0.50", "0.50", "0.50", "1"]
    assert parse_labels(["1.0", "0", "2.00"]) == [1, 0, 2]
    assert parse_labels(["pos", "1.0"]) == ["pos", "1.0"]  # not all numbers: labels stay text


def test_read_texts_brings_the_pair_column_along(tmp_path):

    path = tmp_path / "pairs.tsv"
    path.write_text("sentence1\tsentence2\tlabel\na cat\ta dog\t0\n")
    assert read_texts(str(path)) == (["a cat"], ["a dog"])
    assert read_texts(str(path), text_column="sentence2") == (["a dog"], None)
    with pytest.raises(BertcError, match="column 'nope' not found"):
        read_texts(str(path), pair_column="nope")


def test_align_labels_gives_found_labels_the_known_form():
    assert align_labels([0, 1, None, 7], ["0", "1", "maybe"]) == ["0", "1", None, 7]
    assert align_labels(["1"], [0, 1]) == [1]


def test_nan_labels_are_missing_and_read_texts_never_says_nan(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": NaN}\n{"text": null, "label": "nan"}\n{"text": "b", "label": 1}\n')
    assert read_dataset(path).labels == [None, None, 1]
    assert read_texts(str(path)) == (["a", "", "b"], None)
