"""bertc export --onnx: artifact contract, fusion counts and head checks, verification, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import bertc.export.onnx as export_module
from bertc.artifact import load_tokenizer, read_manifest
from bertc.cli import app
from bertc.errors import BertcError
from bertc.export import graph
from bertc.export.config import ExportConfig
from bertc.export.onnx import Exported, export, export_
from bertc.inference.onnx import OnnxPredictor, create_session
from bertc.inference.registry import load_predictor
from bertc.modeling import load_pretrained_classifier
from bertc.torch_artifact import load_model, save_artifact

runner = CliRunner()


def test_export_writes_a_complete_verified_artifact(onnx_artifact, tiny_artifact):
    files = {p.name for p in onnx_artifact.iterdir()}
    assert {"model.onnx", "bertc.json", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not {"model.safetensors", "config.json"} & files
    manifest, parent = read_manifest(onnx_artifact), read_manifest(tiny_artifact)
    assert manifest["stage"] == "export" and manifest["task"] == parent["task"]
    assert manifest["parent"]["path"] == str(tiny_artifact.absolute())
    model = manifest["model"]
    assert model["kind"] == "onnx" and model["variant"] == "fp32" and model["file"] == "model.onnx"
    assert model["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert model["heads_per_layer"] == [4, 4] and model["num_parameters"] == parent["model"]["num_parameters"]
    assert model["fusion"]["Attention"] == 2 and model["fusion"]["EmbedLayerNormalization"] == 1
    assert model["fusion"]["SkipLayerNormalization"] == 4 and model["fusion"]["BiasGelu"] == 2
    assert model["fusion_check"]["complete"] and [n["num_heads"] for n in model["fusion_check"]["nodes"]] == [4, 4]
    check = manifest["metrics"]["verification"]
    assert check["passed"] and check["max_abs_logit_diff"] < 1e-4 and check["label_agreement"] == 1.0
    assert check["samples"] == 60 and check["accuracy"] == check["reference_accuracy"]
    assert manifest["metrics"]["eval"]["accuracy"] == check["accuracy"]


def test_export_in_memory_returns_the_verified_graph_and_leaves_the_model_as_it_was(
        tmp_path, monkeypatch, tiny_artifact, onnx_artifact, texts):
    monkeypatch.chdir(tmp_path)
    model, tokenizer = load_model(tiny_artifact, attn_implementation="eager"), load_tokenizer(tiny_artifact)
    model.train()
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    exported = export_(model, tokenizer, ExportConfig(verify_samples=60), task=read_manifest(tiny_artifact)["task"])
    assert isinstance(exported, Exported) and isinstance(exported.proto, onnx.ModelProto)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert model.training and all((model.state_dict()[name] == tensor).all() for name, tensor in weights.items())
    stage = read_manifest(onnx_artifact)
    assert exported.description == stage["model"]  # what the stage records is what export_ returns
    assert exported.description["size_bytes"] == len(exported.proto.SerializeToString())
    assert exported.metrics["verification"]["passed"] and exported.metrics["verification"]["samples"] == 60
    assert exported.metrics["eval"]["accuracy"] == stage["metrics"]["eval"]["accuracy"]
    session = create_session(exported.proto.SerializeToString())
    np.testing.assert_allclose(OnnxPredictor(session, tokenizer, [0, 1]).logits(texts),
                               load_predictor(onnx_artifact).logits(texts), atol=1e-5)


def test_export_in_memory_without_a_task_takes_the_model_labels(tiny_artifact):
    model, tokenizer = load_model(tiny_artifact, attn_implementation="eager"), load_tokenizer(tiny_artifact)
    exported = export_(model, tokenizer, ExportConfig(optimize="basic", verify_samples=5))
    check = exported.metrics["verification"]
    assert check["passed"] and check["samples"] == 5 and check["data"].startswith("built-in sentences")
    assert "eval" not in exported.metrics and exported.description["fusion_check"] is None


def test_graph_has_dynamic_int64_inputs_and_float_logits(onnx_artifact):
    proto = onnx.load(str(onnx_artifact / "model.onnx"))
    for tensor in proto.graph.input:
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
    (logits,) = proto.graph.output
    assert logits.name == "logits" and logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("heads", [[[0, 1, 2, 3], [1, 3]], [[0, 2, 3], []]], ids=["4-2", "3-0"])
def test_pruned_model_with_uneven_heads_fuses_and_matches_pytorch(tmp_path, tiny_artifact, texts, heads,
                                                                  pruned_copy):
    pruned = pruned_copy(tiny_artifact, tmp_path / "pruned", heads)
    out = export(pruned, ExportConfig(verify_samples=30), tmp_path / "onnx")
    model = read_manifest(out)["model"]
    counts = [len(h) for h in heads]
    assert model["heads_per_layer"] == counts
    fused = model["fusion_check"]
    assert fused["complete"] and fused["fused_attention"] == sum(c > 0 for c in counts)
    assert [(n["layer"], n["num_heads"]) for n in fused["nodes"]] == [(i, c) for i, c in enumerate(counts) if c]
    onnx_logits = load_predictor(out).logits(texts)
    torch_logits = load_predictor(pruned).logits(texts)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


def test_wrong_head_count_in_a_fused_node_is_an_error(onnx_artifact):
    proto = onnx.load(str(onnx_artifact / "model.onnx"))
    graph.check_attention(proto, [4, 4])
    node = next(n for n in proto.graph.node if n.op_type == "Attention")
    next(a for a in node.attribute if a.name == "num_heads").i = 2
    with pytest.raises(BertcError, match="wrong number of heads"):
        graph.check_attention(proto, [4, 4])


def test_layer_groups_follow_layer_norms(onnx_artifact):
    proto = onnx.load(str(onnx_artifact / "model.onnx"))
    groups = graph.layer_groups(proto, 2)
    kinds = {(n.op_type, groups[n.name]) for n in proto.graph.node}
    assert ("Attention", "layer.0") in kinds and ("Attention", "layer.1") in kinds
    assert ("EmbedLayerNormalization", "embeddings") in kinds
    assert {g for op, g in kinds if op == "Gemm"} == {"classifier"}
    assert graph.layer_groups(proto, 3) is None


def test_verification_catches_a_corrupted_graph(tmp_path, tiny_artifact, monkeypatch):
    original = export_module.optimize

    def corrupted(raw, level, **options):
        proto = original(raw, level, **options)
        classifier = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
        weight = next(t for t in proto.graph.initializer if t.name == classifier.input[1])
        values = onnx.numpy_helper.to_array(weight) * 1.5
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
        return proto

    monkeypatch.setattr(export_module, "optimize", corrupted)
    with pytest.raises(BertcError, match="does not match PyTorch"):
        export(tiny_artifact, ExportConfig(verify_samples=30), tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and list(tmp_path.iterdir()) == []


def without_attention_fusion(monkeypatch):
    import onnxruntime.transformers.optimizer as optimizer

    original = optimizer.optimize_model

    def optimize_model(*args, optimization_options=None, **kwargs):
        if optimization_options is not None:
            optimization_options.enable_attention = False
        return original(*args, optimization_options=optimization_options, **kwargs)

    monkeypatch.setattr(optimizer, "optimize_model", optimize_model)


def test_missing_fusion_is_reported_and_strict_makes_it_an_error(tmp_path, tiny_artifact, monkeypatch, caplog):
    without_attention_fusion(monkeypatch)
    with pytest.raises(BertcError, match="only 0 of 2 attention layers fused"):
        export(tiny_artifact, ExportConfig(strict=True, verify_samples=10), tmp_path / "strict")
    assert not (tmp_path / "strict").exists()
    with caplog.at_level(logging.WARNING, logger="bertc.export"):
        out = export(tiny_artifact, ExportConfig(verify_samples=10), tmp_path / "loose")
    assert "only 0 of 2" in caplog.text
    assert read_manifest(out)["model"]["fusion_check"]["complete"] is False


def test_basic_optimization_and_fp16(tmp_path, tiny_artifact, texts):
    basic = export(tiny_artifact, ExportConfig(optimize="basic", verify_samples=20), tmp_path / "basic")
    model = read_manifest(basic)["model"]
    assert model["fusion"]["Attention"] == 0 and model["fusion_check"] is None
    half = export(tiny_artifact, ExportConfig(fp16=True, verify_samples=20), tmp_path / "fp16")
    manifest = read_manifest(half)
    assert manifest["model"]["variant"] == "fp16" and manifest["metrics"]["verification"]["atol"] == 5e-2
    proto = onnx.load(str(half / "model.onnx"))
    assert {t.type.tensor_type.elem_type for t in proto.graph.input} == {onnx.TensorProto.INT64}
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    np.testing.assert_allclose(load_predictor(half).logits(texts), load_predictor(basic).logits(texts), atol=2e-2)


def test_roberta_without_token_type_ids_and_without_recorded_data(tmp_path, tiny_roberta_dir, texts):
    model, tokenizer = load_pretrained_classifier(str(tiny_roberta_dir), ["neg", "pos"])
    src = save_artifact(tmp_path / "roberta", model, tokenizer, stage="finetune", config={},
                        task={"labels": ["neg", "pos"], "max_length": 32})
    config = json.loads((src / "tokenizer_config.json").read_text())  # as RoBERTa tokenizers: no token types
    (src / "tokenizer_config.json").write_text(json.dumps({**config, "model_input_names": ["input_ids",
                                                                                           "attention_mask"]}))
    out = export(src, ExportConfig(), tmp_path / "onnx")
    manifest = read_manifest(out)
    assert manifest["model"]["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["model"]["fusion"]["Attention"] == 2
    check = manifest["metrics"]["verification"]
    assert check["data"].startswith("built-in sentences") and "accuracy" not in check
    np.testing.assert_allclose(load_predictor(out).logits(texts), load_predictor(src).logits(texts), atol=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--opset", "9"], "--opset 9 is not supported"),
    (["--optimize", "none", "--strict"], "--strict checks Attention fusion"),
    (["--optimize", "max"], "--optimize 'max'"),
    (["--min-agreement", "2"], "--min-agreement"),
])
def test_cli_bad_options_exit_2_before_work(tmp_path, tiny_artifact, extra, message):
    result = runner.invoke(app, ["export", str(tiny_artifact), "--onnx", "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "o").exists()


def test_cli_bad_sources_and_existing_output(tmp_path, onnx_artifact, tiny_artifact):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["export", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a bertc artifact or a transformers model" in result.output
    result = runner.invoke(app, ["export", str(onnx_artifact), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "export the PyTorch artifact" in result.output
    result = runner.invoke(app, ["export", str(tiny_artifact), "--out", str(tmp_path / "o"), "--data",
                                 str(tmp_path / "missing.tsv")])
    assert result.exit_code == 2 and "does not exist" in result.output
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(tiny_artifact), "--out", str(existing)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_cli_export_prints_fusion_and_verification(tmp_path, tiny_artifact):
    result = runner.invoke(app, ["export", str(tiny_artifact), "--onnx", "--out", str(tmp_path / "o"),
                                 "--verify-samples", "10"])
    assert result.exit_code == 0, result.output
    assert "Attention fused in 2 of 2" in result.output and "label agreement" in result.output
    assert json.loads((tmp_path / "o" / "bertc.json").read_text())["config"]["verify_samples"] == 10
