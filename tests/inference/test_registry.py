"""The predictor registry: one loader per model kind, chosen from the manifest; inference never imports export."""

from __future__ import annotations

from pathlib import Path

import pytest

import bertc.inference
from bertc.artifact import write_manifest
from bertc.errors import BertcError
from bertc.inference.onnx import load_onnx_predictor
from bertc.inference.openvino import load_openvino_predictor
from bertc.inference.pytorch import load_torch_predictor
from bertc.inference.registry import PREDICTOR_LOADERS, load_predictor, register_predictor_loader
from bertc.inference.torch_quantized import load_torch_dynamic_predictor

INFERENCE = Path(bertc.inference.__file__).parent


def artifact_of_kind(directory: Path, kind: str) -> Path:
    directory.mkdir()
    write_manifest(directory, stage="export", config={}, parent=None, model={"kind": kind},
                   task={"labels": ["neg", "pos"]})
    return directory


def test_every_model_kind_has_one_loader():
    assert PREDICTOR_LOADERS == {"pytorch": load_torch_predictor, "onnx": load_onnx_predictor,
                                 "pytorch-quantized": load_torch_dynamic_predictor,
                                 "openvino": load_openvino_predictor}


def test_an_unknown_kind_is_refused_in_one_line(tmp_path):
    with pytest.raises(BertcError) as err:
        load_predictor(artifact_of_kind(tmp_path / "a", "tflite"))
    message = str(err.value)
    assert "holds a 'tflite' model that this installation cannot run" in message and "\n" not in message
    assert "known kinds: onnx, openvino, pytorch, pytorch-quantized" in message


def test_load_predictor_dispatches_on_the_manifest_kind(tmp_path, monkeypatch):
    monkeypatch.setattr("bertc.inference.registry.PREDICTOR_LOADERS", dict(PREDICTOR_LOADERS))
    calls = []

    @register_predictor_loader("tflite")
    def load_tflite(path, manifest, device, batch_size):
        calls.append((path, manifest["task"]["labels"], device, batch_size))
        return "predictor"

    path = artifact_of_kind(tmp_path / "a", "tflite")
    assert load_predictor(str(path), device="cuda", batch_size=8) == "predictor"
    assert calls == [(path, ["neg", "pos"], "cuda", 8)]
    assert "tflite" not in PREDICTOR_LOADERS  # registered on the copy only


def test_inference_does_not_name_export_anywhere():
    """Not even as an importlib string: inference is a lower layer than export."""
    for module in INFERENCE.glob("*.py"):
        assert "bertc.export" not in module.read_text(), module.name


def test_the_onnx_runtime_path_imports_neither_torch_nor_pandas():
    """The bench's memory child for an ONNX model imports only its runtime, so its peak RSS is the model's."""
    import subprocess
    import sys

    code = ("import sys, bertc.bench.memory, bertc.inference.registry, bertc.inference.onnx; "
            "print(sorted(m for m in ('torch', 'pandas', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
