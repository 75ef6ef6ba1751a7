"""The quantization handlers through their interface: refusals, layer groups, candidates with float groups, save.

The models are tiny and untrained (nothing is fine-tuned here); the stage's round trips live in test_quantize.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertConfig

from bertc.artifact import write_manifest
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, QuantizeConfig, TorchDynamicConfig
from bertc.export.onnx import export_graph
from bertc.export.quantizers import DynamicHandler, OnnxHandler, Source, TorchDynamicHandler, float_default_type
from bertc.inference.torch_quantized import load_torch_dynamic_predictor
from tests.conftest import tiny_tokenizer

LABELS = ["neg", "pos"]
TEXTS = ["the movie was good", "a very boring and awful plot", "it is fine", "sad"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained 2-layer BERT classifier (eager attention, so ORT fuses it) and its tokenizer."""
    tokenizer, vocab_size = tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2, attn_implementation="eager")
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval(), tokenizer


@pytest.fixture(scope="module")
def exported(tiny):
    model, tokenizer = tiny
    return export_graph(model, tokenizer, ExportConfig())  # (proto, manifest["model"])


def test_check_source_accepts_fp32_onnx_and_pytorch_parents_only(tmp_path):
    handler = DynamicHandler
    for model in ({"kind": "pytorch"}, {"kind": "onnx", "variant": "fp32"}, {}):
        handler.check_source(tmp_path, {"model": model}, QuantizeConfig().method)
    manifest = {"model": {"kind": "onnx", "variant": "int8-dynamic"}, "parent": {"path": "/runs/fp32"}}
    with pytest.raises(BertcError) as err:
        handler.check_source(tmp_path, manifest, QuantizeConfig().method)
    assert str(err.value) == (f"{tmp_path} is already converted (onnx int8-dynamic); --method dynamic starts from an "
                              "fp32 ONNX artifact or a PyTorch one. Pass /runs/fp32 instead")


def test_torch_dynamic_check_source_refuses_onnx_parents(tmp_path):
    TorchDynamicHandler.check_source(tmp_path, {"model": {"kind": "pytorch"}}, TorchDynamicConfig())
    with pytest.raises(BertcError, match=r"holds a onnx fp32 model; --method torch-dynamic quantizes a PyTorch"):
        TorchDynamicHandler.check_source(tmp_path, {"model": {"kind": "onnx", "variant": "fp32"}},
                                         TorchDynamicConfig())


def test_handlers_refuse_a_model_of_the_wrong_kind(tmp_path, tiny):
    model, tokenizer = tiny
    with pytest.raises(BertcError, match=r"--method dynamic quantizes an ONNX graph \(onnx.ModelProto\), not a "
                                         r"BertForSequenceClassification; export the model first"):
        DynamicHandler(Source(model, tokenizer), QuantizeConfig(), tmp_path)
    with pytest.raises(BertcError, match="--method torch-dynamic quantizes a PyTorch model, not a ModelProto"):
        TorchDynamicHandler(Source(onnx.ModelProto(), tokenizer), QuantizeConfig(method=TorchDynamicConfig()),
                            tmp_path)


def test_the_float_default_type_lets_the_quantizer_type_fused_ops():
    assert float_default_type() == {"DefaultTensorType": onnx.TensorProto.FLOAT}


def test_an_onnx_graph_that_cannot_be_grouped_refuses_float_layers(tmp_path):
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    handler = DynamicHandler(Source(empty, task={"labels": LABELS}), QuantizeConfig(), tmp_path)
    assert (tmp_path / "source.onnx").is_file()  # ORT's quantizers read files: the graph in memory is written once
    assert handler.nodes_in([]) == []
    with pytest.raises(BertcError, match="cannot tell which encoder layer each node of .* belongs to"):
        handler.groups()


def test_dynamic_handler_keeps_the_float_groups_nodes_out_of_int8(tmp_path, tiny, exported):
    proto, description = exported
    _, tokenizer = tiny
    handler = DynamicHandler(Source(proto, tokenizer, {"labels": LABELS, "max_length": 32}, description),
                             QuantizeConfig(), tmp_path)
    # Groups holding MatMul or Attention nodes: the pooler and classifier are fused into Gemm, which stays float.
    assert handler.groups() == ["layer.0", "layer.1"]
    kept = handler.nodes_in(["layer.0"])
    assert kept and all(handler.node_groups[name] == "layer.0" for name in kept)
    candidate = handler.build(["layer.0"])
    nodes = onnx.load(str(candidate)).graph.node
    ops = {node.name: node.op_type for node in nodes}
    source_ops = {node.name: node.op_type for node in proto.graph.node}
    assert {name: ops.get(name) for name in kept} == {name: source_ops[name] for name in kept}  # untouched
    assert sum(op == "QAttention" for op in ops.values()) == 1  # layer 1 only
    assert sum(op == "Attention" for op in ops.values()) == 1  # layer 0 stayed float
    reference = handler.reference_predictor().logits(TEXTS)
    np.testing.assert_allclose(handler.predictor(candidate).logits(TEXTS), reference, atol=0.1)
    directory = tmp_path / "saved"
    directory.mkdir()
    model = handler.save(candidate, ["layer.0"], directory)
    assert (directory / "model.onnx").is_file() and (directory / "tokenizer.json").is_file()
    assert model["variant"] == "int8-dynamic" and model["heads_per_layer"] == description["heads_per_layer"]
    quantization = model["quantization"]
    assert quantization["float_groups"] == ["layer.0"] and quantization["float_nodes"] == len(kept)
    assert quantization["op_types"]["QAttention"] == 1 and quantization["method"] == "dynamic"
    handler.discard(candidate)
    assert not candidate.exists()


def test_apply_quantizes_the_source_graph_in_place(tmp_path, tiny, exported):
    proto, description = exported
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    handler = DynamicHandler(Source(proto, tiny[1], {"labels": LABELS}, description), QuantizeConfig(), tmp_path)
    assert handler.apply_([]) is proto
    assert {node.op_type for node in proto.graph.node} >= {"QAttention"}
    assert not list(tmp_path.glob("candidate-*.onnx"))  # the candidate file is not left behind


def test_torch_dynamic_handler_groups_candidates_and_saved_recipe(tmp_path, tiny):
    model, tokenizer = tiny
    task = {"labels": LABELS, "max_length": 32}
    handler = TorchDynamicHandler(Source(model, tokenizer, task), QuantizeConfig(method=TorchDynamicConfig()),
                                  tmp_path)
    assert handler.groups() == ["layer.0", "layer.1", "classifier"]
    assert handler.float_modules(["classifier"]) == ["bert.pooler.dense", "classifier"]
    candidate = handler.build(["classifier"])
    assert type(candidate.classifier) is nn.Linear and type(candidate.bert.pooler.dense) is nn.Linear
    assert type(candidate.bert.encoder.layer[0].output.dense) is not nn.Linear
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))  # the source is untouched
    logits = handler.predictor(candidate).logits(TEXTS)
    np.testing.assert_allclose(logits, handler.reference_predictor().logits(TEXTS), atol=0.1)
    directory = tmp_path / "saved"
    directory.mkdir()
    description = handler.save(candidate, ["classifier"], directory)
    assert description["kind"] == "pytorch-quantized" and description["variant"] == "int8-torch-dynamic"
    assert description["quantization"]["float_modules"] == ["bert.pooler.dense", "classifier"]
    manifest = write_manifest(directory, stage="quantize", config={}, parent=None, model=description, task=task)
    reloaded = load_torch_dynamic_predictor(directory, manifest)  # float weights + recipe: the measured model
    np.testing.assert_allclose(reloaded.logits(TEXTS), logits, rtol=0, atol=1e-6)
    assert type(reloaded.model.classifier) is nn.Linear
    assert type(reloaded.model.bert.encoder.layer[1].attention.self.query) is not nn.Linear


def test_onnx_handler_needs_a_write_candidate():
    with pytest.raises(NotImplementedError):
        OnnxHandler.write_candidate(None, [], None)
