"""The bench results file: where it may be written, and what is read back."""

from __future__ import annotations

import json

import pytest

from bertc.bench.results import RESULTS_FORMAT, RESULTS_VERSION, check_results_output, read_results
from bertc.errors import BertcError


def test_a_new_file_is_fine_an_existing_one_needs_overwrite(tmp_path):
    out = tmp_path / "results.json"
    assert check_results_output(str(out), overwrite=False) == out
    out.write_text("{}")
    with pytest.raises(BertcError, match=r"results.json already exists; choose another --out or pass --overwrite"):
        check_results_output(out, overwrite=False)
    assert check_results_output(out, overwrite=True) == out
    assert out.read_text() == "{}"  # checking never deletes


def test_a_directory_is_not_a_results_file(tmp_path):
    with pytest.raises(BertcError, match=r"is a directory; pass a file name such as results.json"):
        check_results_output(tmp_path, overwrite=True)


def test_read_results_returns_the_file(tmp_path):
    path = tmp_path / "r.json"
    results = {"format": RESULTS_FORMAT, "format_version": RESULTS_VERSION, "variants": []}
    path.write_text(json.dumps(results))
    assert read_results(str(path)) == results


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"bad.json is not valid JSON \("),
    ("[1, 2]", r"bad.json is not a bertc bench results file"),
    (json.dumps({"format": "something-else", "format_version": RESULTS_VERSION}), r"is not a bertc bench results"),
    (json.dumps({"format": RESULTS_FORMAT, "format_version": 0}),
     rf"has results format version 0; this bertc reads version {RESULTS_VERSION}\. Re-run `bertc bench`"),
    (json.dumps({"format": RESULTS_FORMAT}), r"has results format version None"),
])
def test_read_results_refuses_anything_else(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(BertcError, match=message):
        read_results(path)


def test_read_results_of_a_missing_file(tmp_path):
    with pytest.raises(BertcError, match=r"results file .*missing.json does not exist"):
        read_results(tmp_path / "missing.json")
    with pytest.raises(BertcError, match="does not exist"):
        read_results(tmp_path)  # a directory is not a results file either
