"""``resume=True`` on export and quantize: a finished output of the same parent and config is kept, else rebuilt."""

from __future__ import annotations

import json
import shutil

import pytest

import bertc.export.onnx as export_module
import bertc.export.quantize as quantize_module
from bertc.artifact import manifest_digest, read_manifest
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, QuantizeConfig
from bertc.export.onnx import export
from bertc.export.quantize import quantize
from bertc.export.reuse import is_up_to_date


class Rebuilt(Exception):
    """Raised by the in-memory function in place of the work: the stage tried to build again."""


def refuse_to_build(*args, **kwargs):
    raise Rebuilt


def stamp(path) -> int:
    return (path / "bertc.json").stat().st_mtime_ns


def test_export_resume_keeps_a_finished_output_and_rebuilds_when_anything_differs(tmp_path, tiny_artifact,
                                                                                   monkeypatch):
    parent = shutil.copytree(tiny_artifact, tmp_path / "parent")
    config = ExportConfig(optimize="basic", verify_samples=10)
    out = export(parent, config, tmp_path / "onnx")
    before = stamp(out)
    monkeypatch.setattr(export_module, "export_", refuse_to_build)
    assert export(parent, config, out, resume=True) == out
    assert export(parent, ExportConfig(optimize="basic", verify_samples=10), str(out), overwrite=True,
                  resume=True) == out  # an equal config, even with --overwrite
    assert stamp(out) == before
    with pytest.raises(BertcError, match="already exists"):  # another config: built as usual, so refused
        export(parent, ExportConfig(optimize="basic", verify_samples=11), out, resume=True)
    with pytest.raises(Rebuilt):
        export(parent, ExportConfig(optimize="basic", verify_samples=11), out, overwrite=True, resume=True)
    with pytest.raises(Rebuilt):  # without resume a finished output is built again too
        export(parent, config, out, overwrite=True)
    manifest = json.loads((parent / "bertc.json").read_text())
    (parent / "bertc.json").write_text(json.dumps({**manifest, "metrics": {"eval": {"accuracy": 0.5}}}))
    with pytest.raises(Rebuilt):  # the parent changed since
        export(parent, config, out, overwrite=True, resume=True)
    monkeypatch.undo()
    rebuilt = export(parent, config, out, overwrite=True, resume=True)
    assert stamp(rebuilt) != before and read_manifest(rebuilt)["parent"]["manifest_sha256"] == manifest_digest(parent)
    assert export(parent, config, out, resume=True) == out and stamp(out) == stamp(rebuilt)


def test_quantize_resume_keeps_a_finished_output(tmp_path, onnx_artifact, monkeypatch):
    config = QuantizeConfig(eval_samples=20)
    out = quantize(onnx_artifact, config, tmp_path / "int8")
    before = stamp(out)
    monkeypatch.setattr(quantize_module, "search", refuse_to_build)
    assert quantize(onnx_artifact, config, out, resume=True) == out and stamp(out) == before
    with pytest.raises(Rebuilt):
        quantize(onnx_artifact, QuantizeConfig(eval_samples=21), out, overwrite=True, resume=True)
    (out / "model.onnx").unlink()  # damaged: not a complete artifact any more
    with pytest.raises(Rebuilt):
        quantize(onnx_artifact, config, out, overwrite=True, resume=True)


def test_only_a_complete_artifact_of_the_same_stage_counts(tmp_path, onnx_artifact, tiny_artifact):
    config = read_manifest(onnx_artifact)["config"]
    exported = ExportConfig(**config)
    assert is_up_to_date(onnx_artifact, stage="export", config=exported, parent=tiny_artifact)
    assert not is_up_to_date(onnx_artifact, stage="quantize", config=exported, parent=tiny_artifact)
    assert not is_up_to_date(onnx_artifact, stage="export", config=exported, parent=onnx_artifact)
    assert not is_up_to_date(tmp_path / "missing", stage="export", config=exported, parent=tiny_artifact)
    half = shutil.copytree(onnx_artifact, tmp_path / "half")
    (half / "bertc.json").write_text("{")
    assert not is_up_to_date(half, stage="export", config=exported, parent=tiny_artifact)
