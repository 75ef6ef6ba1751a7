"""``resume=True`` for export and quantize: a finished output is reused only when stage, config and parent match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertc.artifact import MANIFEST, write_manifest
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.reuse import is_up_to_date, output_to_build

CONFIG = ExportConfig(opset=17, verify_samples=10)


def made(directory: Path, *, stage="export", config=CONFIG, parent=None, model=None, model_file="model.onnx"):
    """A hand-made artifact: the manifest plus an (empty) model file."""
    directory.mkdir(parents=True)
    if model_file:
        (directory / model_file).write_bytes(b"")
    write_manifest(directory, stage=stage, config=config, parent=parent, model=model or {"kind": "onnx"},
                   task={"labels": ["neg", "pos"]})
    return directory


@pytest.fixture
def parent(tmp_path) -> Path:
    return made(tmp_path / "parent", stage="finetune", config={"lr": 1e-4}, model={"kind": "pytorch"},
                model_file="model.safetensors")


def test_an_output_built_from_this_parent_with_this_config_is_up_to_date(tmp_path, parent):
    out = made(tmp_path / "out", parent=parent)
    assert is_up_to_date(out, stage="export", config=CONFIG, parent=parent)
    assert is_up_to_date(str(out), stage="export", config=ExportConfig(opset=17, verify_samples=10), parent=str(parent))


def test_anything_that_differs_means_building_again(tmp_path, parent):
    out = made(tmp_path / "out", parent=parent)
    assert not is_up_to_date(tmp_path / "nothing", stage="export", config=CONFIG, parent=parent)
    assert not is_up_to_date(out, stage="quantize", config=CONFIG, parent=parent)
    assert not is_up_to_date(out, stage="export", config=ExportConfig(opset=18, verify_samples=10), parent=parent)
    other = made(tmp_path / "other-parent", stage="finetune", model={"kind": "pytorch"})
    assert not is_up_to_date(out, stage="export", config=CONFIG, parent=other)


def test_a_parent_changed_since_is_not_the_same_parent(tmp_path, parent):
    out = made(tmp_path / "out", parent=parent)
    manifest = json.loads((parent / MANIFEST).read_text())
    manifest["metrics"] = {"accuracy": 0.5}  # e.g. re-trained into the same directory
    (parent / MANIFEST).write_text(json.dumps(manifest))
    assert not is_up_to_date(out, stage="export", config=CONFIG, parent=parent)


def test_a_missing_model_file_or_a_damaged_manifest_means_building_again(tmp_path, parent):
    out = made(tmp_path / "out", parent=parent)
    (out / "model.onnx").unlink()
    assert not is_up_to_date(out, stage="export", config=CONFIG, parent=parent)
    named = made(tmp_path / "named", parent=parent, model={"kind": "onnx", "file": "graph.onnx"}, model_file=None)
    assert not is_up_to_date(named, stage="export", config=CONFIG, parent=parent)
    (named / "graph.onnx").write_bytes(b"")  # the manifest names its file
    assert is_up_to_date(named, stage="export", config=CONFIG, parent=parent)
    manifest = json.loads((named / MANIFEST).read_text())
    (named / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    assert not is_up_to_date(named, stage="export", config=CONFIG, parent=parent)


def test_a_parent_that_is_not_an_artifact_is_compared_by_path(tmp_path):
    source = tmp_path / "hf-model"
    source.mkdir()
    out = made(tmp_path / "out", parent=source, model={"kind": "pytorch"}, model_file="model.safetensors")
    assert is_up_to_date(out, stage="export", config=CONFIG, parent=source)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not is_up_to_date(out, stage="export", config=CONFIG, parent=elsewhere)


def test_output_to_build_reuses_only_with_resume_and_otherwise_checks_the_output(tmp_path, parent):
    out = made(tmp_path / "out", parent=parent)
    assert output_to_build(out, stage="export", config=CONFIG, src=parent, overwrite=False, resume=True) == (out, True)
    with pytest.raises(BertcError, match="already exists"):
        output_to_build(out, stage="export", config=CONFIG, src=parent, overwrite=False, resume=False)
    changed = ExportConfig(opset=18)
    with pytest.raises(BertcError, match="already exists"):  # resume cannot reuse it, and it may not be replaced
        output_to_build(out, stage="export", config=changed, src=parent, overwrite=False, resume=True)
    assert output_to_build(str(out), stage="export", config=changed, src=parent, overwrite=True, resume=True) == \
        (out, False)
    with pytest.raises(BertcError, match="is an input of this stage"):
        output_to_build(parent, stage="export", config=CONFIG, src=parent, overwrite=True, resume=False)
