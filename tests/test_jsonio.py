"""JSON in and out: what becomes plain JSON, and files written whole or not at all."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bertc.jsonio import to_jsonable, write_json


@dataclass(frozen=True)
class Inner:
    path: Path = Path("/data/train.tsv")
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    name: str = "prune"
    inner: Inner = field(default_factory=Inner)


def test_dataclasses_become_nested_plain_dicts():
    assert to_jsonable(Outer()) == {"name": "prune", "inner": {"path": "/data/train.tsv", "sizes": [1, 2]}}


def test_a_dataclass_type_is_left_alone():
    assert to_jsonable(Outer) is Outer


def test_keys_become_text_and_tuples_lists():
    assert to_jsonable({1: (2, 3), None: [Path("a/b")]}) == {"1": [2, 3], "None": ["a/b"]}


def test_numpy_scalars_become_python_numbers():
    value = to_jsonable({"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "zero_d": np.array(2.5)})
    assert value == {"f": 0.5, "i": 3, "b": True, "zero_d": 2.5}
    assert type(value["f"]) is float and type(value["i"]) is int and type(value["b"]) is bool
    json.dumps(value)


def test_plain_values_pass_through():
    for value in ("text", 3, 1.5, None, True):
        assert to_jsonable(value) == value


def test_write_json_writes_indented_json_and_makes_folders(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    write_json(path, {"config": Outer(), "score": np.float64(0.25)})
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "config": {\n    "name": "prune"')
    assert json.loads(text) == {"config": {"name": "prune", "inner": {"path": "/data/train.tsv", "sizes": [1, 2]}},
                                "score": 0.25}
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left behind


def test_write_json_replaces_a_file_and_takes_text_paths(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    write_json(str(path), [1, 2])
    assert json.loads(path.read_text()) == [1, 2]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"kept": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
