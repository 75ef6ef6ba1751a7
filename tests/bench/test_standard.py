"""--standard-recipe: the unpruned fine-tuned parent, and what is built from it to bench beside the variants."""

from __future__ import annotations

import json
import shutil

import pytest

from bertc.bench import standard
from bertc.bench.config import BenchConfig
from bertc.bench.standard import standard_recipe_variants, unpruned_parent
from bertc.bench.variants import describe_variant
from bertc.errors import BertcError


def with_kind(src, dest, kind: str):
    """A copy of an artifact whose manifest says it holds a ``kind`` model."""
    copy = shutil.copytree(src, dest)
    manifest = json.loads((copy / "bertc.json").read_text())
    manifest["model"]["kind"] = kind
    (copy / "bertc.json").write_text(json.dumps(manifest))
    return copy


def variant_of(*steps) -> dict:
    return {"path": "/runs/variant", "lineage": [{"stage": stage, "path": str(path)} for stage, path in steps]}


def test_the_parent_is_the_fine_tuned_model_an_export_comes_from(tiny_onnx, tiny_artifact):
    assert unpruned_parent(describe_variant(tiny_onnx)) == tiny_artifact


def test_the_search_stops_at_the_first_pruning_or_distillation(tmp_path, tiny_artifact):
    tuned_again = shutil.copytree(tiny_artifact, tmp_path / "tuned-again")
    for shrink in ("prune", "distill"):
        variant = variant_of(("finetune", tiny_artifact), (shrink, "/runs/small"), ("finetune", tuned_again))
        assert unpruned_parent(variant) == tiny_artifact  # not the fine-tune of the smaller model


def test_the_last_fine_tuned_pytorch_model_wins(tmp_path, tiny_artifact):
    second = shutil.copytree(tiny_artifact, tmp_path / "second")
    quantized = with_kind(tiny_artifact, tmp_path / "quantized", "pytorch-quantized")
    variant = variant_of(("source", "/hub/model"), ("finetune", tiny_artifact), ("finetune", second),
                         ("finetune", quantized), ("export", "/runs/onnx"))
    assert unpruned_parent(variant) == second  # the int8 PyTorch model is no fp32 baseline


@pytest.mark.parametrize("lineage", ["only-source", "gone", "pruned-first"])
def test_without_an_unpruned_fine_tuned_parent_it_says_to_drop_the_option(lineage, tmp_path, tiny_artifact):
    steps = {"only-source": [("source", tiny_artifact)],
             "gone": [("finetune", tmp_path / "deleted"), ("export", "/runs/onnx")],
             "pruned-first": [("prune", "/runs/pruned"), ("finetune", tiny_artifact)]}[lineage]
    with pytest.raises(BertcError, match=r"--standard-recipe needs the fine-tuned model that /runs/variant comes "
                                         r"from.*run without --standard-recipe"):
        unpruned_parent(variant_of(*steps))


@pytest.fixture
def fake_stages(monkeypatch, tiny_onnx):
    """export and quantize that record their calls and copy the tiny ONNX export into place."""
    calls = []

    def stage(name):
        def run(src, config, out):
            calls.append((name, src, config, out))
            return shutil.copytree(tiny_onnx, out)
        return run

    monkeypatch.setattr(standard, "export", stage("export"))
    monkeypatch.setattr(standard, "quantize", stage("quantize"))
    return calls


def test_the_standard_recipe_is_eager_and_ort_int8_of_the_parent(tmp_path, tiny_onnx, tiny_artifact, fake_stages):
    config = BenchConfig(data="/data/sst2", split="validation")
    added = standard_recipe_variants([describe_variant(tiny_onnx)], tmp_path, config)
    assert [v["name"] for v in added] == ["standard: pytorch eager", "standard: ort int8"]
    eager, int8 = added
    assert eager["path"] == str(tiny_artifact) and eager["standard_recipe"] and int8["standard_recipe"]
    assert int8["source"] == str(tiny_artifact) and "deleted after the run" in int8["note"]
    (export_call, quantize_call) = fake_stages
    assert export_call[0] == "export" and export_call[1] == tiny_artifact
    assert (export_call[2].data, export_call[2].split) == ("/data/sst2", "validation")
    assert quantize_call[1] == export_call[3] and quantize_call[3] == tmp_path / "standard-ort-int8"
    assert (quantize_call[2].eval_data, quantize_call[2].split) == ("/data/sst2", "validation")
    assert int8["path"] == str(tmp_path / "standard-ort-int8")  # built in the temporary folder


def test_a_parent_already_benched_is_not_benched_twice(tmp_path, tiny_onnx, tiny_artifact, fake_stages):
    variants = [describe_variant(tiny_onnx), describe_variant(tiny_artifact)]
    added = standard_recipe_variants(variants, tmp_path, BenchConfig(data="/data/sst2"))
    assert [v["name"] for v in added] == ["standard: ort int8"]
