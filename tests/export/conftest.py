"""Fixtures for export and quantization: ONNX exports of the tiny fine-tuned BERT, and pruned variants of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.modeling import encoder_layers, keep_heads_, record_layer_shapes_
from bertc.torch_artifact import load_artifact, save_artifact


def pruned_copy(src: Path, out: Path, heads: list[list[int]]) -> Path:
    """``src`` with only the listed heads kept in each layer (an empty list removes the layer's attention)."""
    artifact = load_artifact(src)
    model = artifact.model
    for layer, keep in zip(encoder_layers(model), heads):
        keep_heads_(model, layer, keep)
    record_layer_shapes_(model)
    return save_artifact(out, model, artifact.tokenizer, stage="prune", config={"heads": heads},
                         task=artifact.manifest["task"], parent=src)


@pytest.fixture(scope="session", name="pruned_copy")
def pruned_copy_fixture():
    return pruned_copy


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, tiny_artifact) -> Path:
    """The tiny fine-tuned BERT exported with full fusion and verified (fp32)."""
    return export(tiny_artifact, ExportConfig(verify_samples=60), tmp_path_factory.mktemp("onnx") / "fp32")


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return ["the movie was good", "a very boring and awful plot", "it is fine", "sad", "really great acting",
            "the story was dull and the film was cold and very very bad indeed"]
