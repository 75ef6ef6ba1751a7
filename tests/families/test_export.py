"""Export, dynamic int8 and bench for every family: fused attention where ONNX Runtime can fuse it (BERT,
DistilBERT), a recorded one-line note where it cannot (DeBERTa-v2, ModernBERT), and ONNX logits checked against
plain transformers, unpruned and pruned."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertc.artifact import read_manifest
from bertc.bench.bench import bench
from bertc.bench.config import BenchConfig
from bertc.errors import BertcError
from bertc.export import graph
from bertc.export.config import DynamicQuantConfig, ExportConfig, QuantizeConfig, TorchDynamicConfig
from bertc.export.onnx import export, labels_task
from bertc.export.quantize import quantize, quantize_
from bertc.inference.registry import load_predictor
from bertc.modeling import encoder_layers, keep_heads_, keep_layers_, keep_neurons_, layer_shapes, record_layer_shapes_
from bertc.torch_artifact import save_artifact
from tests.conftest import write_tsv
from tests.families.tiny import FAMILY_NAMES, make_family_dir

FUSING = {"bert", "distilbert"}
# Longer than ModernBERT's local window (8) and of different lengths, so the padded batch differs from one by one.
TEXTS = ["the movie was good", "a very boring and awful plot with dull acting and a cold, sad story", "sad",
         "really great acting and a lovely, warm film that was superb from the first scene to the last one"]


def prune_(model) -> None:
    """Layers 1 and 2 of 3 kept (ModernBERT's new first layer keeps its attention norm), then 2 heads of 4 in the
    first and none in the second, and 20 FFN neurons in the first."""
    keep_layers_(model, [1, 2])
    first, second = encoder_layers(model)
    keep_heads_(model, first, [1, 3])
    keep_heads_(model, second, [])
    keep_neurons_(model, first, torch.arange(3, 23))
    record_layer_shapes_(model)


class Notes(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class Family:
    """One family's tiny classifier: the transformers model (unpruned or pruned) and its bertc exports."""

    def __init__(self, root: Path, name: str, pruned: bool, data: Path):
        self.name, self.root, self.data = name, root, data
        source = make_family_dir(root / "hf", name, labels=("0", "1"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(source))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(source), attn_implementation="eager")
        if pruned:
            prune_(self.model)
        task = {**labels_task(self.model.config.id2label), "text_column": "sentence", "label_column": "label",
                "eval_data": str(data)}
        self.artifact = save_artifact(root / "pytorch", self.model, self.tokenizer, stage="prune", config={},
                                      task=task)
        notes = Notes()
        logging.getLogger("bertc.export").addHandler(notes)
        try:
            self.onnx = export(self.artifact, ExportConfig(verify_samples=24), root / "onnx")
        finally:
            logging.getLogger("bertc.export").removeHandler(notes)
        self.notes = notes.lines
        self._int8 = None

    def int8(self) -> Path:
        if self._int8 is None:
            self._int8 = quantize(self.onnx, QuantizeConfig(eval_samples=24), self.root / "int8")
        return self._int8

    def reference_logits(self) -> np.ndarray:
        """Plain transformers, one text at a time (no padding)."""
        self.model.eval()
        with torch.no_grad():
            rows = [self.model(**self.tokenizer(text, return_tensors="pt")).logits[0] for text in TEXTS]
        return torch.stack(rows).numpy()


@pytest.fixture(scope="session")
def family_data(tmp_path_factory) -> Path:
    return write_tsv(tmp_path_factory.mktemp("family-data") / "eval.tsv", 24, seed=5)


@pytest.fixture(scope="session")
def families(tmp_path_factory, family_data):
    built = {}

    def get(name: str, pruned: bool = False) -> Family:
        if (name, pruned) not in built:
            root = tmp_path_factory.mktemp(f"{name}-{'pruned' if pruned else 'full'}")
            built[name, pruned] = Family(root, name, pruned, family_data)
        return built[name, pruned]

    return get


@pytest.mark.parametrize("pruned", [False, True], ids=["full", "pruned"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_export_is_verified_and_matches_transformers(families, name, pruned):
    family = families(name, pruned)
    manifest = read_manifest(family.onnx)
    check = manifest["metrics"]["verification"]
    assert check["passed"] and check["max_abs_logit_diff"] < 1e-4 and check["samples"] == 24
    got = load_predictor(family.onnx).logits(TEXTS)  # one right-padded batch
    np.testing.assert_allclose(got, family.reference_logits(), atol=1e-4)
    heads = layer_shapes(family.model)[0]
    assert manifest["model"]["heads_per_layer"] == heads == ([2, 0] if pruned else [4, 4, 4])
    takes_types = name not in ("distilbert", "modernbert")
    assert ("token_type_ids" in manifest["model"]["inputs"]) == takes_types


@pytest.mark.parametrize("pruned", [False, True], ids=["full", "pruned"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_attention_fuses_where_it_can_and_says_so_where_it_cannot(families, name, pruned):
    family = families(name, pruned)
    model = read_manifest(family.onnx)["model"]
    check, fused = model["fusion_check"], model["fusion"]["Attention"] + model["fusion"]["MultiHeadAttention"]
    heads = [h for h in model["heads_per_layer"] if h > 0]
    if name in FUSING:
        assert check["applies"] and check["complete"] and fused == len(heads)
        assert [node["num_heads"] for node in check["nodes"]] == heads
        assert [node["layer"] for node in check["nodes"]] == [i for i, h in enumerate(model["heads_per_layer"]) if h]
        assert not family.notes
    else:
        assert check["applies"] is False and fused == 0 and check["attention_layers"] == len(heads)
        note = f"ONNX Runtime does not fuse {name.removesuffix('-unshared')} attention"
        assert family.notes == [check["note"]] and check["note"].startswith(note)
    assert model["fusion"]["SkipLayerNormalization"] > 0  # the rest of the graph is fused in every family


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_layer_groups_place_post_norm_layers_and_leave_modernbert_whole(families, name):
    proto = graph.load_graph(families(name, True).onnx / "model.onnx")
    groups = graph.layer_groups(proto, 2)
    if name == "modernbert":
        assert groups is None and graph.model_type(proto) == "modernbert"
    else:
        assert set(groups.values()) == {"embeddings", "layer.0", "layer.1", "classifier"}
        fused = [groups[n.name] for n in proto.graph.node if n.op_type == "Attention"]
        assert fused == (["layer.0"] if name in FUSING else [])


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_dynamic_int8_quantizes_and_benches(families, name, tmp_path):
    family = families(name)
    int8 = family.int8()
    manifest = read_manifest(int8)
    assert manifest["model"]["variant"] == "int8-dynamic"
    assert manifest["model"]["quantization"]["op_types"].get("MatMulInteger", 0) > 0
    assert manifest["metrics"]["verification"]["samples"] == 24
    config = BenchConfig(data=str(family.data), batch_sizes=(1,), seq_lens=(16,), warmup=1, runs=3, rounds=3,
                         memory=False)
    results = bench([family.artifact, family.onnx, int8], config, tmp_path / "bench.json")
    assert [v["kind"] for v in results["variants"]] == ["pytorch", "onnx", "onnx"]
    for variant in results["variants"]:
        assert variant["latency"][0]["p50_ms"] > 0 and variant["accuracy"] is not None


@pytest.mark.parametrize("name", ["distilbert", "deberta-v2", "modernbert"])  # BERT: tests/export
def test_pytorch_dynamic_int8_quantizes_every_linear_and_predicts_like_its_parent(families, name, tmp_path):
    family = families(name)
    out = quantize(family.artifact, QuantizeConfig(method=TorchDynamicConfig(), eval_data=str(family.data),
                                                   eval_samples=24), tmp_path / "torch-int8")
    manifest = read_manifest(out)
    assert manifest["model"]["kind"] == "pytorch-quantized"
    agreement = manifest["metrics"]["verification"]["label_agreement"]
    assert agreement >= 0.75, manifest["metrics"]["verification"]
    quantized = load_predictor(out).logits(TEXTS, None)
    parent = load_predictor(family.artifact).logits(TEXTS, None)
    assert quantized.shape == parent.shape and not np.array_equal(quantized, parent)
    assert np.abs(quantized - parent).max() < 0.5


def test_modernbert_int8_cannot_keep_layers_in_float(families, tmp_path):
    """A pre-norm graph has no layer groups: asking for layers in float is refused, never mis-assigned."""
    proto = graph.load_graph(families("modernbert").onnx / "model.onnx")
    with pytest.raises(BertcError, match="modernbert graph is quantized as a whole"):
        quantize_(proto, DynamicQuantConfig(), float_groups=["layer.0"])


@pytest.mark.parametrize("name", ["distilbert", "deberta-v2-unshared", "modernbert"])  # BERT: tests/export
def test_openvino_export_of_a_pruned_model_is_verified(families, name, tmp_path):
    family = families(name, True)
    out = export(family.artifact, ExportConfig(openvino=True, verify_samples=24), tmp_path / "ov")
    manifest = read_manifest(out)
    assert manifest["model"]["kind"] == "openvino" and manifest["metrics"]["verification"]["passed"]
    np.testing.assert_allclose(load_predictor(out).logits(TEXTS), family.reference_logits(), atol=1e-4)
