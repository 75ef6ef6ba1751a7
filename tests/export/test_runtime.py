"""The ONNX Runtime predictor: providers, bertc evaluate/predict on ONNX artifacts, and CUDA (skipped without)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bertc.artifact import read_manifest
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.inference.evaluation import evaluate, predict
from bertc.inference.onnx import OnnxPredictor, load_onnx_predictor, providers_for
from bertc.inference.registry import load_predictor


def cuda_provider_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def test_providers_for_cpu_and_cuda():
    assert providers_for("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers_for("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BertcError, match="onnxruntime-gpu"):
        providers_for("cuda", ["CPUExecutionProvider"])
    with pytest.raises(BertcError, match="not one of cpu, cuda"):
        providers_for("tpu", ["CPUExecutionProvider"])


def test_onnx_artifacts_evaluate_and_predict_like_their_parent(onnx_artifact, tiny_artifact, tiny_data, texts):
    predictor = load_predictor(onnx_artifact)
    assert isinstance(predictor, OnnxPredictor) and predictor.labels == [0, 1]
    onnx_report, torch_report = evaluate(onnx_artifact, str(tiny_data)), evaluate(tiny_artifact, str(tiny_data))
    assert onnx_report["accuracy"] == torch_report["accuracy"]
    assert onnx_report["confusion_matrix"] == torch_report["confusion_matrix"]
    assert [r["label"] for r in predict(onnx_artifact, texts)] == [r["label"] for r in predict(tiny_artifact, texts)]


def test_feeds_are_right_padded_int64_in_session_order(onnx_artifact):
    predictor = load_predictor(onnx_artifact)
    feeds = predictor.feeds(["good", "a very long and boring film"])
    assert list(feeds) == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(v.dtype == np.int64 for v in feeds.values())
    mask = feeds["attention_mask"]
    assert mask[0, 0] == 1 and mask[0, -1] == 0 and mask[1].all()  # padding on the right
    logits = predictor.session.run(["logits"], feeds)[0]
    np.testing.assert_allclose(logits, predictor.logits(["good", "a very long and boring film"]), atol=1e-5)


def test_cuda_device_without_gpu_is_a_one_line_error(onnx_artifact):
    if cuda_provider_available():
        pytest.skip("a CUDA execution provider is present")
    with pytest.raises(BertcError, match="cuda"):
        load_onnx_predictor(onnx_artifact, read_manifest(onnx_artifact), device="cuda")


def test_importing_bertc_does_not_import_onnxruntime():
    code = ("import sys, bertc, bertc.cli, bertc.inference; "
            "assert 'onnxruntime' not in sys.modules and 'bertc.export.onnx' not in sys.modules; "
            "assert not [m for m in sys.modules if m.startswith('bertc.export.') and m != 'bertc.export.config']")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serving_an_onnx_artifact_never_imports_export(onnx_artifact):
    """Inference sits below export: running what export wrote needs none of it."""
    code = ("import sys; from bertc.inference.registry import load_predictor; "
            f"assert load_predictor({str(onnx_artifact)!r}).logits(['good', 'bad']).shape == (2, 2); "
            "assert 'onnxruntime' in sys.modules; "
            "assert not [m for m in sys.modules if m.startswith('bertc.export')], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
def test_fp16_export_runs_on_cuda(tmp_path, tiny_artifact, texts):
    if not cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu with a CUDA GPU")
    out = export(tiny_artifact, ExportConfig(fp16=True, device="cuda", verify_samples=30), tmp_path / "fp16")
    manifest = read_manifest(out)
    assert manifest["metrics"]["verification"]["device"] == "cuda"
    gpu = load_onnx_predictor(out, manifest, device="cuda")
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    cpu = load_predictor(tiny_artifact)
    np.testing.assert_allclose(gpu.logits(texts), cpu.logits(texts), atol=5e-2)
