"""bertc export --openvino: artifact contract, dynamic axes, verification, precision, the predictor, bad input."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import bertc.export.openvino as openvino_export
import bertc.inference.openvino as openvino_inference
from bertc.artifact import load_tokenizer, read_manifest
from bertc.cli import app
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.export.openvino import OpenVinoExported, export_openvino_
from bertc.inference.evaluation import evaluate, predict
from bertc.inference.openvino import OpenVinoPredictor, compile_model
from bertc.inference.registry import load_predictor
from bertc.modeling import load_pretrained_classifier
from bertc.torch_artifact import load_model, save_artifact
from tests.conftest import assert_one_line_error

ov = pytest.importorskip("openvino")
runner = CliRunner()
OPENVINO = ExportConfig(openvino=True, verify_samples=60)


@pytest.fixture(scope="module")
def openvino_cli(tmp_path_factory, tiny_artifact):
    """The tiny fine-tuned BERT exported by `bertc export --openvino`: (the artifact, what the command printed)."""
    out = tmp_path_factory.mktemp("openvino") / "fp32"
    result = runner.invoke(app, ["export", str(tiny_artifact), "--out", str(out), "--openvino", "--verify-samples",
                                 str(OPENVINO.verify_samples)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def openvino_artifact(openvino_cli):
    return openvino_cli[0]


@pytest.fixture(scope="module")
def roberta_source(tmp_path_factory, tiny_roberta_dir):
    """An untrained tiny RoBERTa classifier artifact whose tokenizer makes no token types, as RoBERTa's."""
    model, tokenizer = load_pretrained_classifier(str(tiny_roberta_dir), ["neg", "pos"])
    src = save_artifact(tmp_path_factory.mktemp("roberta") / "src", model, tokenizer, stage="finetune", config={},
                        task={"labels": ["neg", "pos"], "max_length": 32})
    config = json.loads((src / "tokenizer_config.json").read_text())
    (src / "tokenizer_config.json").write_text(json.dumps({**config, "model_input_names": ["input_ids",
                                                                                           "attention_mask"]}))
    return src


def mixed_texts() -> list[str]:
    """Texts of very different lengths, so batches differ in both size and padded length."""
    return ["good", "the movie was very very boring and the plot was dull and the acting was cold and sad",
            "it is fine", "really great acting", "a lovely warm story", "bad", "the film was superb and happy",
            "poor"]


def test_export_writes_a_verified_ir_artifact_with_explicit_precision(openvino_artifact, tiny_artifact):
    files = {p.name for p in openvino_artifact.iterdir()}
    assert {"model.xml", "model.bin", "bertc.json", "tokenizer.json"} <= files
    assert not {"model.onnx", "model.safetensors", "config.json"} & files
    manifest, parent = read_manifest(openvino_artifact), read_manifest(tiny_artifact)
    assert manifest["stage"] == "export" and manifest["task"] == parent["task"]
    assert manifest["config"]["openvino"] is True and manifest["config"]["inference_precision"] == "f32"
    model = manifest["model"]
    assert model["kind"] == "openvino" and model["variant"] == "fp32" and model["inference_precision"] == "f32"
    assert model["file"] == "model.xml" and model["weights_file"] == "model.bin"
    assert model["openvino_version"] == ov.__version__
    assert model["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert model["dynamic_axes"]["input_ids"] == ["batch", "sequence"] and model["dynamic_axes"]["logits"] == ["batch"]
    assert model["num_parameters"] == parent["model"]["num_parameters"]
    assert model["size_bytes"] == sum((openvino_artifact / name).stat().st_size for name in ("model.xml", "model.bin"))
    check = manifest["metrics"]["verification"]
    assert check["passed"] and check["max_abs_logit_diff"] < 1e-4 and check["label_agreement"] == 1.0
    assert check["samples"] == 60 and check["inference_precision"] == "f32"
    assert manifest["metrics"]["eval"]["accuracy"] == check["accuracy"] == check["reference_accuracy"]


def test_ir_has_dynamic_int64_inputs_fp32_weights_and_named_logits(openvino_artifact):
    model = ov.Core().read_model(str(openvino_artifact / "model.xml"))
    for port in model.inputs:
        assert port.get_element_type() == ov.Type.i64
        assert port.get_partial_shape().is_dynamic and port.get_partial_shape().rank.get_length() == 2
        assert all(dim.is_dynamic for dim in port.get_partial_shape())
    assert {port.get_any_name() for port in model.inputs} == {"input_ids", "attention_mask", "token_type_ids"}
    assert model.outputs[0].get_any_name() == "logits"
    constants = {op.get_element_type() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert ov.Type.f32 in constants and ov.Type.f16 not in constants  # save_model's fp16 compression is off


def test_predictor_compiles_at_the_recorded_precision_and_matches_pytorch_at_any_shape(openvino_artifact,
                                                                                         tiny_artifact):
    texts = mixed_texts()
    reference = load_predictor(tiny_artifact).logits(texts)
    for batch_size in (1, 3, 64):  # batch sizes 1..8 and padded lengths from 3 tokens to the longest text
        predictor = load_predictor(openvino_artifact, batch_size=batch_size)
        assert isinstance(predictor, OpenVinoPredictor)
        np.testing.assert_allclose(predictor.logits(texts), reference, atol=1e-4)
    hint = predictor.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert hint == ov.Type.f32  # explicit: the CPU plugin's default is bf16 wherever the CPU has it


def test_evaluate_and_predict_run_openvino_artifacts(openvino_artifact, tiny_artifact, tiny_data):
    report = evaluate(openvino_artifact, str(tiny_data), split="validation")
    assert report["accuracy"] == evaluate(tiny_artifact, str(tiny_data), split="validation")["accuracy"]
    assert report["samples"] == 60
    predictions = predict(openvino_artifact, ["the movie was great", "awful and boring"])
    assert [p["label"] for p in predictions] == [p["label"] for p in predict(tiny_artifact, ["the movie was great",
                                                                                            "awful and boring"])]
    with pytest.raises(BertcError, match="CPU only"):
        load_predictor(openvino_artifact, device="cuda")


def test_roberta_without_token_type_ids(tmp_path, roberta_source):
    out = export(roberta_source, ExportConfig(openvino=True, verify_samples=16), tmp_path / "openvino")
    manifest = read_manifest(out)
    assert manifest["model"]["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["model"]["model_type"] == "roberta"
    assert manifest["metrics"]["verification"]["data"].startswith("built-in sentences")
    np.testing.assert_allclose(load_predictor(out, batch_size=3).logits(mixed_texts()),
                               load_predictor(roberta_source).logits(mixed_texts()), atol=1e-4)


def test_in_memory_export_writes_nothing_and_does_not_share_weights(tmp_path, monkeypatch, tiny_artifact,
                                                                    openvino_artifact):
    monkeypatch.chdir(tmp_path)
    model, tokenizer = load_model(tiny_artifact, attn_implementation="eager"), load_tokenizer(tiny_artifact)
    model.train()
    exported = export_openvino_(model, tokenizer, ExportConfig(openvino=True, verify_samples=5))
    assert isinstance(exported, OpenVinoExported) and list(tmp_path.iterdir()) == []
    assert model.training
    check = exported.metrics["verification"]
    assert check["passed"] and check["samples"] == 5 and check["data"].startswith("built-in sentences")
    stage = read_manifest(openvino_artifact)["model"]
    # What the stage records is what export_openvino_ returns; OpenVINO numbers its nodes with a process-wide
    # counter, so only the length of model.xml differs between two conversions.
    assert {**exported.description, "size_bytes": None} == {**stage, "size_bytes": None}
    assert exported.description["size_bytes"] == len(exported.xml) + len(exported.weights)
    predictor = OpenVinoPredictor(compile_model(exported.model()), tokenizer, ["0", "1"])
    before = predictor.logits(mixed_texts())
    model.classifier.weight.data.mul_(-3.0)  # the IR holds its own copy of the weights
    np.testing.assert_allclose(OpenVinoPredictor(compile_model(exported.model()), tokenizer, ["0", "1"])
                               .logits(mixed_texts()), before)
    np.testing.assert_allclose(before, load_predictor(openvino_artifact).logits(mixed_texts()), atol=1e-5)


def test_verification_catches_a_wrong_ir_and_writes_nothing(tmp_path, monkeypatch, tiny_artifact):
    def shifted(self, *tensors):
        return self.model(**dict(zip(self.inputs, tensors))).logits * 1.5 + 0.5

    monkeypatch.setattr(openvino_export.LogitsWrapper, "forward", shifted)
    with pytest.raises(BertcError, match="does not match PyTorch.*Nothing was written"):
        export(tiny_artifact, ExportConfig(openvino=True, verify_samples=20), tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_resume_keeps_a_finished_openvino_artifact(openvino_artifact, tiny_artifact):
    written = (openvino_artifact / "bertc.json").stat().st_mtime_ns
    assert export(tiny_artifact, OPENVINO, openvino_artifact, resume=True) == openvino_artifact
    assert (openvino_artifact / "bertc.json").stat().st_mtime_ns == written


def test_bf16_when_the_cpu_has_it(tmp_path, tiny_artifact, openvino_artifact):
    if "BF16" not in openvino_inference.cpu_capabilities(ov.Core()):
        pytest.skip("this CPU has no bf16 support")
    out = export(tiny_artifact, ExportConfig(openvino=True, inference_precision="bf16", verify_samples=30),
                 tmp_path / "bf16")
    manifest = read_manifest(out)
    assert manifest["model"]["variant"] == "bf16" and manifest["model"]["inference_precision"] == "bf16"
    check = manifest["metrics"]["verification"]
    assert check["passed"] and check["atol"] == openvino_export.BF16_ATOL and check["inference_precision"] == "bf16"
    predictor = load_predictor(out)
    assert predictor.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    texts = mixed_texts()
    bf16, f32 = predictor.logits(texts), load_predictor(openvino_artifact).logits(texts)
    assert 0 < np.abs(bf16 - f32).max() < openvino_export.BF16_ATOL  # bf16 really ran, within its tolerance


def test_cli_export_openvino_prints_the_ir_and_verification(openvino_cli):
    out, printed = openvino_cli
    assert "OpenVINO IR" in printed and "f32 (CPU plugin, set explicitly)" in printed
    assert "label agreement" in printed and f"wrote {out}" in printed.replace("\n", "")
    assert read_manifest(out)["config"] == json.loads(json.dumps(dataclasses.asdict(OPENVINO)))  # as the CLI built it


def no_bf16(monkeypatch):
    monkeypatch.setattr(openvino_inference, "cpu_capabilities", lambda core: ["FP32", "INT8", "EXPORT_IMPORT"])


@pytest.mark.parametrize("extra, phrases", [
    (["--inference-precision", "bf16"], ["bf16 inference needs a CPU with bf16 support", "FP32, INT8",
                                         "--inference-precision f32"]),
    (["--fp16"], ["--fp16", "drop --fp16"]),
    (["--device", "cuda"], ["--device cuda", "CPU"]),
    (["--strict"], ["--strict"]),
])
def test_cli_bad_openvino_options_exit_2_and_write_nothing(tmp_path, monkeypatch, tiny_artifact, extra, phrases):
    no_bf16(monkeypatch)
    result = runner.invoke(app, ["export", str(tiny_artifact), "--out", str(tmp_path / "o"), "--openvino", *extra])
    assert_one_line_error(result, *phrases)
    assert list(tmp_path.iterdir()) == []


def test_bf16_is_refused_in_memory_too_on_a_cpu_without_it(monkeypatch, tiny_artifact):
    no_bf16(monkeypatch)
    model, tokenizer = load_model(tiny_artifact, attn_implementation="eager"), load_tokenizer(tiny_artifact)
    with pytest.raises(BertcError, match="bf16 support"):
        export_openvino_(model, tokenizer, ExportConfig(openvino=True, inference_precision="bf16"))


def test_missing_openvino_names_the_extra_and_writes_nothing(tmp_path, monkeypatch, tiny_artifact,
                                                             openvino_artifact):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    result = runner.invoke(app, ["export", str(tiny_artifact), "--out", str(tmp_path / "o"), "--openvino"])
    assert_one_line_error(result, "bertc export --openvino needs OpenVINO", "pip install 'bertc[openvino]'")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BertcError, match=r"needs OpenVINO: pip install 'bertc\[openvino\]'"):
        load_predictor(openvino_artifact)
