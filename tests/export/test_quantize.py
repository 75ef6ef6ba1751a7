"""bertc quantize: each method's round trip, the accuracy-aware retry, and bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from typer.testing import CliRunner

from bertc.artifact import load_tokenizer, read_manifest
from bertc.cli import app
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.export.config import DynamicQuantConfig, QuantizeConfig, StaticQuantConfig, TorchDynamicConfig, method_config
from bertc.export.quantize import load_source, measure_sensitivity, quantize, quantize_, search
from bertc.export.quantizers import DynamicHandler
from bertc.export.verify import Samples, logits_on, verification_samples
from bertc.inference.onnx import OnnxPredictor, create_session
from bertc.inference.registry import load_predictor
from bertc.inference.torch_quantized import quantize_linear_dynamic
from bertc.torch_artifact import load_artifact, load_model

runner = CliRunner()


def snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    noise = np.mean((reference - candidate) ** 2)
    return float(10 * np.log10(np.mean(reference ** 2) / max(noise, 1e-20)))


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path / "model.onnx")).graph.node}


def test_dynamic_int8_round_trip(tmp_path, onnx_artifact, texts):
    out = quantize(onnx_artifact, QuantizeConfig(method=DynamicQuantConfig(per_channel=True)), tmp_path / "int8")
    manifest, parent = read_manifest(out), read_manifest(onnx_artifact)
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "bertc.json", "tokenizer.json"}
    assert manifest["stage"] == "quantize" and manifest["task"] == parent["task"]
    assert manifest["config"]["method"] == {"per_channel": True, "reduce_range": False, "method": "dynamic"}
    model = manifest["model"]
    assert model["kind"] == "onnx" and model["variant"] == "int8-dynamic"
    assert model["heads_per_layer"] == parent["model"]["heads_per_layer"]
    assert {"QAttention", "MatMulInteger"} <= op_types(out) and "Attention" not in op_types(out)
    assert model["size_bytes"] < model["fp32_size_bytes"]
    check = manifest["metrics"]["verification"]
    assert check["samples"] == 60 and check["reference"] == "onnx fp32 (the parent)"
    assert manifest["metrics"]["accuracy_budget"]["met"] is None and len(manifest["metrics"]["attempts"]) == 1
    reference, quantized = load_predictor(onnx_artifact).logits(texts), load_predictor(out).logits(texts)
    assert snr_db(reference, quantized) > 15


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_int8_quantizes_activations(tmp_path, onnx_artifact, texts, calibration):
    method = StaticQuantConfig(calibration=calibration, calibration_samples=40)
    out = quantize(onnx_artifact, QuantizeConfig(method=method), tmp_path / calibration)
    manifest = read_manifest(out)
    assert manifest["model"]["variant"] == "int8-static"
    details = manifest["model"]["quantization"]
    assert details["calibration"] == calibration and details["calibration_samples"] == 40
    assert details["calibration_data"].endswith("train.tsv")
    assert details["op_types"]["QuantizeLinear"] >= 8  # activations too, not weight-only
    reference, quantized = load_predictor(onnx_artifact).logits(texts), load_predictor(out).logits(texts)
    assert snr_db(reference, quantized) > 15


def test_fp16_and_pytorch_source(tmp_path, tiny_artifact, texts):
    out = quantize(tiny_artifact, QuantizeConfig(method=method_config("fp16"), eval_samples=30), tmp_path / "fp16")
    manifest = read_manifest(out)
    assert manifest["model"]["variant"] == "fp16" and manifest["parent"]["path"] == str(tiny_artifact.absolute())
    assert manifest["metrics"]["export_verification"]["passed"]  # exported to fp32 ONNX first, and verified
    assert manifest["metrics"]["verification"]["reference"] == "onnx fp32 (exported from the parent)"
    np.testing.assert_allclose(load_predictor(out).logits(texts), load_predictor(tiny_artifact).logits(texts),
                               atol=2e-2)


def test_torch_dynamic_saves_float_safetensors_and_quantizes_on_load(tmp_path, tiny_artifact, texts):
    out = quantize(tiny_artifact, QuantizeConfig(method=TorchDynamicConfig()), tmp_path / "torch-int8")
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    model = read_manifest(out)["model"]
    assert model["kind"] == "pytorch-quantized" and model["variant"] == "int8-torch-dynamic"
    assert model["quantization"]["float_modules"] == []
    predictor = load_predictor(out)
    assert sum(isinstance(m, DynamicLinear) for m in predictor.model.modules()) == 14  # 6 per layer + 2 in the head
    expected = load_predictor(tiny_artifact)
    expected.model = quantize_linear_dynamic(expected.model, [])
    np.testing.assert_array_equal(predictor.logits(texts), expected.logits(texts))
    assert snr_db(load_predictor(tiny_artifact).logits(texts), predictor.logits(texts)) > 15
    with pytest.raises(BertcError, match="not a PyTorch one"):
        load_artifact(out)  # stages that need float weights do not take it silently


def test_quantize_in_memory_torch_dynamic(tiny_artifact, texts):
    model = load_model(tiny_artifact)
    quantized = quantize_(model, TorchDynamicConfig(), float_groups=["classifier"])
    assert quantized is model  # in place, as torchao's quantize_
    assert sum(isinstance(m, DynamicLinear) for m in model.modules()) == 12  # the pooler and classifier stay float
    assert type(model.classifier) is nn.Linear and type(model.bert.pooler.dense) is nn.Linear
    expected = quantize_linear_dynamic(load_model(tiny_artifact), ["bert.pooler.dense", "classifier"])
    predictor, reference = load_predictor(tiny_artifact), load_predictor(tiny_artifact)
    predictor.model, reference.model = model, expected
    np.testing.assert_array_equal(predictor.logits(texts), reference.logits(texts))


def test_quantize_in_memory_onnx_graph(tmp_path, monkeypatch, onnx_artifact, texts):
    monkeypatch.chdir(tmp_path)
    proto = onnx.load(str(onnx_artifact / "model.onnx"))
    assert quantize_(proto, DynamicQuantConfig()) is proto
    types = {node.op_type for node in proto.graph.node}
    assert {"QAttention", "MatMulInteger"} <= types and "Attention" not in types
    partly = onnx.load(str(onnx_artifact / "model.onnx"))
    quantize_(partly, DynamicQuantConfig(), float_groups=["layer.1"])  # layers found without a manifest
    counts = [node.op_type for node in partly.graph.node]
    assert counts.count("QAttention") == 1 and counts.count("Attention") == 1
    assert list(tmp_path.iterdir()) == []  # its work files are gone
    tokenizer = load_tokenizer(onnx_artifact)
    quantized = OnnxPredictor(create_session(proto.SerializeToString()), tokenizer, [0, 1]).logits(texts)
    assert snr_db(load_predictor(onnx_artifact).logits(texts), quantized) > 15


def test_quantize_in_memory_refuses_a_model_of_the_wrong_kind(tiny_artifact, onnx_artifact):
    with pytest.raises(BertcError, match="quantizes an ONNX graph"):
        quantize_(load_model(tiny_artifact), DynamicQuantConfig())
    with pytest.raises(BertcError, match="quantizes a PyTorch model"):
        quantize_(onnx.load(str(onnx_artifact / "model.onnx")), TorchDynamicConfig())


class FakeHandler:
    """Quantizing ``layer.1`` costs 6 accuracy points, the others 0.5; the reference is always right."""

    labels = [0, 1]
    reference_name = "fake"
    variant = "int8-fake"
    truth = np.array([0, 1] * 100)

    def __init__(self):
        self.built = []

    def groups(self):
        return ["layer.0", "layer.1", "layer.2"]

    def build(self, float_groups):
        self.built.append(list(float_groups))
        return frozenset(self.groups()) - set(float_groups)

    def discard(self, candidate):
        pass

    def reference_predictor(self):
        return self.predictor(frozenset())

    def predictor(self, quantized):
        wrong = 12 * ("layer.1" in quantized) + sum(1 for g in quantized if g != "layer.1")
        logits = np.eye(2)[self.truth].astype(np.float32)
        logits[:wrong] = logits[:wrong, ::-1]

        class Predictor:
            def logits(self, texts, pairs=None):
                return logits[:len(texts)]
        return Predictor()


def fake_samples():
    return Samples(TextDataset(texts=["x"] * 200, labels=list(FakeHandler.truth)), "fake", True)


def test_retry_keeps_the_most_sensitive_layer_in_float():
    handler = FakeHandler()
    outcome = search(handler, fake_samples(), QuantizeConfig(max_accuracy_drop=1.5, sensitivity_samples=200))
    assert outcome.float_groups == ["layer.1"] and outcome.budget["met"] is True
    assert outcome.sensitivity["layer.1"] > max(outcome.sensitivity["layer.0"], outcome.sensitivity["layer.2"])
    assert [a["float_groups"] for a in outcome.attempts] == [[], ["layer.1"]]
    assert outcome.attempts[0]["accuracy_drop_points"] == pytest.approx(7.0)
    assert outcome.result["accuracy_drop_points"] == pytest.approx(1.0)


def test_retry_that_never_fits_the_budget_is_an_error():
    with pytest.raises(BertcError, match="Nothing was written") as err:
        search(FakeHandler(), fake_samples(), QuantizeConfig(max_accuracy_drop=0.1, max_float_layers=2))
    assert "layer.1" in str(err.value)


def test_no_budget_means_measured_not_enforced():
    handler = FakeHandler()
    outcome = search(handler, fake_samples(), QuantizeConfig())
    assert outcome.budget["met"] is None and handler.built == [[]]


def test_sensitivity_is_measured_on_a_real_graph(tmp_path, onnx_artifact, tiny_data):
    manifest = read_manifest(onnx_artifact)
    samples = verification_samples(None, manifest["task"], "validation", 30)
    source = load_source(onnx_artifact, manifest, "onnx", QuantizeConfig(), samples)
    assert source.file == onnx_artifact / "model.onnx"  # read where it is, not written again
    handler = DynamicHandler(source, QuantizeConfig(), tmp_path)
    assert handler.groups() == ["layer.0", "layer.1"]
    scores = measure_sensitivity(handler, samples, logits_on(handler.reference_predictor(), samples), 30)
    assert set(scores) == {"layer.0", "layer.1"} and all(score > 0 for score in scores.values())
    assert not list(tmp_path.glob("candidate-*.onnx"))  # candidates are removed once measured


@pytest.mark.parametrize("args, message", [
    (["--method", "dynamic", "--calibration", "entropy"], "--calibration does not apply to --method dynamic"),
    (["--method", "fp16", "--per-channel"], "--per-channel does not apply to --method fp16"),
    (["--method", "int4"], "--method 'int4' is not one of"),
    (["--method", "static", "--calibration", "kl"], "--calibration 'kl' is not one of"),
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop must be >= 0"),
    (["--method", "torch-dynamic"], "quantizes a PyTorch artifact"),
])
def test_cli_bad_options_exit_2(tmp_path, onnx_artifact, args, message):
    result = runner.invoke(app, ["quantize", str(onnx_artifact), "--out", str(tmp_path / "q"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "q").exists()


def test_cli_converted_source_empty_calibration_and_existing_output(tmp_path, onnx_artifact):
    result = runner.invoke(app, ["quantize", str(onnx_artifact), "--out", str(tmp_path / "int8"), "--eval-samples",
                                 "20"])
    assert result.exit_code == 0, result.output
    assert "int8-dynamic against its parent" in result.output
    result = runner.invoke(app, ["quantize", str(tmp_path / "int8"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 2 and "already converted" in result.output
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    result = runner.invoke(app, ["quantize", str(onnx_artifact), "--out", str(tmp_path / "s"), "--method", "static",
                                 "--calibration-data", str(empty)])
    assert result.exit_code == 2 and "no usable rows" in result.output and not (tmp_path / "s").exists()
    before = (tmp_path / "int8" / "bertc.json").read_text()
    result = runner.invoke(app, ["quantize", str(onnx_artifact), "--out", str(tmp_path / "int8")])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (tmp_path / "int8" / "bertc.json").read_text() == before
