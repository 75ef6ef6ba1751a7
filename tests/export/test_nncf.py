"""bertc quantize --method nncf-int8: NNCF int8 of an OpenVINO artifact, its accuracy control, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertc.artifact import load_tokenizer, read_manifest
from bertc.cli import app
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.export import nncf_int8
from bertc.export.config import ExportConfig, NncfInt8Config, QuantizeConfig
from bertc.export.onnx import export
from bertc.export.quantize import quantize, quantize_, search
from bertc.export.quantizers import NncfInt8Handler
from bertc.export.verify import Samples
from bertc.inference.openvino import cpu_capabilities, precision_name
from bertc.inference.registry import load_predictor
from tests.conftest import assert_one_line_error

openvino = pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

runner = CliRunner()


@pytest.fixture(scope="module")
def openvino_artifact(tmp_path_factory, tiny_artifact) -> Path:
    return export(tiny_artifact, ExportConfig(openvino=True, verify_samples=60),
                  tmp_path_factory.mktemp("openvino") / "fp32")


@pytest.fixture(scope="module")
def nncf_artifact(tmp_path_factory, openvino_artifact) -> Path:
    config = QuantizeConfig(method=NncfInt8Config(calibration_samples=32), eval_samples=60)
    return quantize(openvino_artifact, config, tmp_path_factory.mktemp("nncf") / "int8")


def ir(path: Path):
    return nncf_int8.read_artifact_ir(path, read_manifest(path)["model"])


def int8_evidence(model) -> tuple[int, int]:
    """(FakeQuantize nodes, int8 constants) of an OpenVINO model."""
    ops = list(model.get_ops())
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in ops)
    int8 = sum(op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8")
               for op in ops)
    return fake_quantize, int8


def test_nncf_int8_round_trip(openvino_artifact, nncf_artifact, texts):
    manifest, parent = read_manifest(nncf_artifact), read_manifest(openvino_artifact)
    assert {p.name for p in nncf_artifact.iterdir()} >= {"model.xml", "model.bin", "bertc.json", "tokenizer.json"}
    assert manifest["stage"] == "quantize" and manifest["task"] == parent["task"]
    assert manifest["parent"]["path"] == str(openvino_artifact.absolute())
    assert manifest["config"]["method"] == {"calibration_data": None, "calibration_samples": 32, "seed": 0,
                                            "method": "nncf-int8"}
    model = manifest["model"]
    assert model["kind"] == "openvino" and model["variant"] == "int8-nncf" and model["file"] == "model.xml"
    assert model["weights_file"] == "model.bin" and model["openvino_version"] == openvino.__version__
    assert model["inference_precision"] == parent["model"]["inference_precision"] == "f32"
    assert model["heads_per_layer"] == parent["model"]["heads_per_layer"]
    details = model["quantization"]
    assert details["nncf_version"] == nncf.__version__ and details["model_type"] == "transformer"
    assert details["calibration_samples"] == 32 and details["calibration_data"].endswith("train.tsv")
    assert details["accuracy_control"] is None and details["float_groups"] == []
    fake_quantize, int8 = int8_evidence(ir(nncf_artifact))
    assert fake_quantize >= 8 and int8 >= 8  # activations and weights of both layers' matmuls
    assert details["op_types"]["FakeQuantize"] == fake_quantize
    assert int8_evidence(ir(openvino_artifact)) == (0, 0)  # the parent is untouched
    assert model["size_bytes"] == sum((nncf_artifact / name).stat().st_size for name in ("model.xml", "model.bin"))
    assert model["fp32_size_bytes"] == parent["model"]["size_bytes"]
    assert (nncf_artifact / "model.bin").stat().st_size < 0.6 * (openvino_artifact / "model.bin").stat().st_size
    check = manifest["metrics"]["verification"]
    assert check["samples"] == 60 and check["reference"] == "openvino f32 (the parent)"
    assert check["label_agreement"] >= 0.9 and abs(check["accuracy_drop_points"]) <= 10
    assert manifest["metrics"]["accuracy_budget"]["met"] is None and len(manifest["metrics"]["attempts"]) == 1
    assert manifest["metrics"]["eval"]["accuracy"] == pytest.approx(check["accuracy"])
    reference, quantized = load_predictor(openvino_artifact).logits(texts), load_predictor(nncf_artifact).logits(texts)
    assert not np.array_equal(reference, quantized)
    assert np.abs(reference - quantized).max() < 0.25 * np.abs(reference).max()


def test_accuracy_control_runs_nncf_and_records_the_budget(tmp_path, openvino_artifact):
    config = QuantizeConfig(method=NncfInt8Config(calibration_samples=16), eval_samples=30, max_accuracy_drop=50.0)
    out = quantize(openvino_artifact, config, tmp_path / "controlled")
    manifest = read_manifest(out)
    control = manifest["model"]["quantization"]["accuracy_control"]
    assert control == {"tool": "nncf.quantize_with_accuracy_control", "max_drop_points": 50.0,
                       "drop_type": "absolute", "validation_samples": 30}
    assert any(message.startswith("Accuracy drop") for message in manifest["model"]["quantization"]["nncf_log"])
    assert manifest["metrics"]["accuracy_budget"]["met"] is True
    assert "sensitivity" not in manifest["metrics"] and len(manifest["metrics"]["attempts"]) == 1
    assert int8_evidence(ir(out))[0] > 0


def test_a_bf16_parent_is_measured_and_recorded_at_bf16(tmp_path, tiny_artifact):
    if "BF16" not in cpu_capabilities(openvino.Core()):
        pytest.skip("this CPU cannot run bf16 inference")
    parent = export(tiny_artifact, ExportConfig(openvino=True, inference_precision="bf16", verify_samples=30),
                    tmp_path / "bf16")
    out = quantize(parent, QuantizeConfig(method=NncfInt8Config(calibration_samples=16), eval_samples=30),
                   tmp_path / "int8")
    manifest = read_manifest(out)
    assert manifest["model"]["inference_precision"] == "bf16" and manifest["model"]["variant"] == "int8-nncf"
    check = manifest["metrics"]["verification"]
    assert check["reference"] == "openvino bf16 (the parent)" and check["label_agreement"] >= 0.9
    compiled = load_predictor(out).compiled
    assert precision_name(compiled.get_property("INFERENCE_PRECISION_HINT")) == "bf16"


def test_validation_function_is_the_accuracy_of_the_compiled_model(openvino_artifact, texts):
    run = load_predictor(openvino_artifact)
    predicted = run.logits(texts).argmax(-1)
    truth = [int(p) if i % 2 else 1 - int(p) for i, p in enumerate(predicted)]  # every other one wrong
    names = run.input_names
    items = list(zip(nncf_int8.item_feeds(run.tokenizer, texts, None, names, 128), truth))
    value, per_item = nncf_int8.accuracy(run.compiled, items)
    assert per_item == [float(i % 2) for i in range(len(texts))] and value == pytest.approx(np.mean(per_item))


def test_quantize_in_memory_returns_a_new_model(openvino_artifact):
    manifest = read_manifest(openvino_artifact)
    model = ir(openvino_artifact)
    tokenizer = load_tokenizer(openvino_artifact)
    quantized = quantize_(model, NncfInt8Config(calibration_samples=8), tokenizer=tokenizer, task=manifest["task"])
    assert int8_evidence(quantized)[0] > 0 and int8_evidence(model) == (0, 0)
    with pytest.raises(BertcError, match="cannot keep named layers in float"):
        quantize_(model, NncfInt8Config(calibration_samples=8), tokenizer=tokenizer, task=manifest["task"],
                  float_groups=["layer.0"])


class ControlledHandler:
    """A handler with its own accuracy control whose one candidate still loses 5 of 100 examples."""

    labels, reference_name, variant, controls_accuracy = [0, 1], "fake", "int8-fake", True
    truth = np.array([0, 1] * 50)

    def __init__(self):
        self.built = 0

    def build(self, float_groups):
        self.built += 1
        return 5

    def groups(self):
        raise AssertionError("a handler that controls accuracy itself is not searched layer by layer")

    def reference_predictor(self):
        return self.predictor(0)

    def predictor(self, wrong):
        logits = np.eye(2)[self.truth].astype(np.float32)
        logits[:wrong] = logits[:wrong, ::-1]
        return type("Predictor", (), {"logits": lambda self, texts, pairs=None: logits[:len(texts)]})()


def test_a_handler_that_misses_its_own_accuracy_control_writes_nothing():
    samples = Samples(TextDataset(texts=["x"] * 100, labels=list(ControlledHandler.truth)), "fake", True)
    handler = ControlledHandler()
    with pytest.raises(BertcError, match="5.00 accuracy points .* own accuracy control. Nothing was written"):
        search(handler, samples, QuantizeConfig(method=NncfInt8Config(), max_accuracy_drop=1.0))
    assert handler.built == 1
    assert search(handler, samples, QuantizeConfig(method=NncfInt8Config(), max_accuracy_drop=5.0)).budget["met"]


def test_cli_quantizes_an_openvino_artifact(tmp_path, openvino_artifact):
    out = tmp_path / "cli-int8"
    result = runner.invoke(app, ["quantize", str(openvino_artifact), "--out", str(out), "--method", "nncf-int8",
                                 "--calibration-samples", "16", "--eval-samples", "20"])
    assert result.exit_code == 0, result.output
    assert "int8-nncf against its parent" in result.output and f"wrote {out}" in result.output.replace("\n", "")
    details = read_manifest(out)["model"]["quantization"]
    assert details["method"] == "nncf-int8" and details["calibration_samples"] == 16


@pytest.fixture
def untrained_openvino_artifact(tmp_path, openvino_artifact) -> Path:
    """The OpenVINO artifact without recorded training data."""
    copy = shutil.copytree(openvino_artifact, tmp_path / "no-train-data")
    manifest = json.loads((copy / "bertc.json").read_text())
    manifest["task"]["train_data"] = None
    (copy / "bertc.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("calibration", [None, "missing.tsv"])
def test_missing_calibration_data_is_refused(tmp_path, untrained_openvino_artifact, calibration):
    out = tmp_path / "out"
    extra = [] if calibration is None else ["--calibration-data", str(tmp_path / calibration)]
    result = runner.invoke(app, ["quantize", str(untrained_openvino_artifact), "--out", str(out), "--method",
                                 "nncf-int8", *extra])
    line = assert_one_line_error(result, "--method nncf-int8 needs calibration data", "--calibration-data")
    assert ("records no training data" in line) == (calibration is None)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_nncf_int8_of_a_pytorch_artifact_says_to_export_with_openvino(tmp_path, tiny_artifact):
    result = runner.invoke(app, ["quantize", str(tiny_artifact), "--out", str(tmp_path / "out"), "--method",
                                 "nncf-int8"])
    assert_one_line_error(result, "pytorch", "--openvino", f"bertc export {tiny_artifact} --openvino")
    assert not (tmp_path / "out").exists()


def test_nncf_int8_of_an_onnx_or_quantized_artifact_is_refused(tmp_path, nncf_artifact):
    onnx_manifest = {"model": {"kind": "onnx", "variant": "fp32"}, "parent": {"path": "runs/finetuned"}, "task": {}}
    with pytest.raises(BertcError, match=r"export with --openvino first \(bertc export runs/finetuned --openvino"):
        NncfInt8Handler.check_source(tmp_path, onnx_manifest, NncfInt8Config())
    result = runner.invoke(app, ["quantize", str(nncf_artifact), "--out", str(tmp_path / "out"), "--method",
                                 "nncf-int8"])
    assert_one_line_error(result, "already quantized (int8-nncf)", "float OpenVINO artifact")


@pytest.mark.parametrize(("method", "phrase"), [("dynamic", "--method nncf-int8"), ("static", "--method nncf-int8"),
                                               ("fp16", "--method nncf-int8"), ("torch-dynamic", "PyTorch artifact")])
def test_other_methods_refuse_an_openvino_artifact(tmp_path, openvino_artifact, method, phrase):
    result = runner.invoke(app, ["quantize", str(openvino_artifact), "--out", str(tmp_path / "out"), "--method",
                                 method])
    line = assert_one_line_error(result, f"--method {method}", phrase)
    assert "openvino" in line.lower() and not (tmp_path / "out").exists()
