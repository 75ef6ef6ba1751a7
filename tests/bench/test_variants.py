"""What is benched: one record per artifact, read from its manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from bertc.bench.variants import (
    describe_variant,
    describe_variants,
    model_size,
    num_parameters,
    shape_summary,
    step_summary,
)
from bertc.errors import BertcError


@pytest.mark.parametrize(("heads", "ffn", "text"), [
    ([12] * 6, [1536] * 6, "6 layers, 12 heads and FFN 1536 per layer"),  # MiniLM: not "72 heads, FFN 9216"
    ([4, 4], [64, 64], "2 layers, 4 heads and FFN 64 per layer"),
    ([4, 4, 2], [1536, 768, 768], "3 layers, heads 4,4,2 and FFN 1536,768,768 per layer"),
    ([4, 4], [1536, 768], "2 layers, 4 heads and FFN 1536,768 per layer"),
    ([4, 0], [64, 64], "2 layers, heads 4,0 and FFN 64 per layer"),
    ([1], [32], "1 layer, 1 head and FFN 32 per layer"),
    ([4, 4], [], "2 layers, 4 heads per layer"),
])
def test_the_shape_shows_per_layer_sizes_as_they_are(heads, ffn, text):
    assert shape_summary(heads, ffn) == text


def test_a_step_summary_names_kind_shape_size_and_accuracy():
    manifest = {"model": {"kind": "onnx", "variant": "int8-dynamic", "quantization": "dynamic",
                          "heads_per_layer": [12, 12, 6], "ffn_per_layer": [1536, 1536, 1536],
                          "num_parameters": 22_713_216},
                "metrics": {"eval": {"accuracy": 0.8635}}}
    assert step_summary(manifest) == ("onnx int8-dynamic dynamic; 3 layers, heads 12,12,6 and FFN 1536 per layer; "
                                      "22.71M parameters; eval accuracy 86.35%")
    assert step_summary({"model": {}}) == "pytorch"  # nothing else known: nothing made up


def test_a_pytorch_artifact_is_described_from_its_manifest(tiny_artifact):
    variant = describe_variant(tiny_artifact)
    assert (variant["name"], variant["kind"], variant["backend"], variant["stage"]) == (
        tiny_artifact.name, "pytorch", "pytorch-eager", "finetune")
    assert variant["labels"] == ["0", "1"]  # strings, as the predictors' labels
    assert variant["standard_recipe"] is False and variant["num_parameters"] == 25378
    assert variant["size_bytes"] == (tiny_artifact / "model.safetensors").stat().st_size
    last = variant["lineage"][-1]
    assert (last["stage"], last["path"]) == ("finetune", str(tiny_artifact))
    assert last["summary"].startswith("pytorch; 2 layers, 4 heads and FFN 64 per layer; 0.03M parameters")
    assert "8 heads" not in last["summary"] and "FFN 128" not in last["summary"]
    assert variant["lineage"][0]["stage"] == "source" and "summary" not in variant["lineage"][0]  # no manifest


def test_an_onnx_export_lists_its_parent_in_the_lineage(tiny_onnx, tiny_artifact):
    variant = describe_variant(tiny_onnx, standard_recipe=True)
    assert (variant["kind"], variant["backend"], variant["variant"]) == ("onnx", "onnxruntime", "fp32")
    assert variant["standard_recipe"] is True
    stages = [(step["stage"], step["path"]) for step in variant["lineage"]]
    assert stages[-2:] == [("finetune", str(tiny_artifact)), ("export", str(tiny_onnx))]
    assert variant["lineage"][-2]["summary"].startswith("pytorch; 2 layers")
    assert variant["lineage"][-1]["summary"].startswith("onnx fp32; 2 layers, 4 heads and FFN 64 per layer")


def test_a_parent_that_is_gone_keeps_its_step_without_a_summary(tmp_path, tiny_artifact, tiny_onnx):
    parent = shutil.copytree(tiny_artifact, tmp_path / "parent")
    child = shutil.copytree(tiny_onnx, tmp_path / "child")
    manifest = json.loads((child / "bertc.json").read_text())
    manifest["lineage"][-1]["path"] = str(parent)
    (child / "bertc.json").write_text(json.dumps(manifest))
    assert "summary" in describe_variant(child)["lineage"][-2]
    shutil.rmtree(parent)
    step = describe_variant(child)["lineage"][-2]
    assert step["path"] == str(parent) and "summary" not in step


def test_only_weight_files_count_as_size(tmp_path, tiny_artifact):
    copy = shutil.copytree(tiny_artifact, tmp_path / "copy")
    weights = (copy / "model.safetensors").stat().st_size
    (copy / "notes.txt").write_bytes(b"x" * 10_000)
    (copy / "extra.onnx_data").write_bytes(b"x" * 300)
    (copy / "sub").mkdir()
    (copy / "sub" / "other.safetensors").write_bytes(b"x" * 500)  # not the artifact's: in a sub-folder
    assert model_size(copy) == weights + 300


def test_parameters_come_from_the_manifest_else_from_the_onnx_graph(tmp_path, tiny_onnx):
    assert num_parameters(tiny_onnx, {"num_parameters": 123}) == 123
    counted = num_parameters(tiny_onnx, {})
    assert 20_000 < counted <= 25378 * 1.01  # the graph's weights (fusion may fold a few)
    assert num_parameters(tmp_path, {}) is None  # no manifest figure and no graph


def test_the_baseline_goes_first_and_nothing_is_benched_twice(tiny_artifact, tiny_onnx):
    variants = describe_variants([tiny_artifact, tiny_onnx, tiny_artifact], baseline=str(tiny_onnx))
    assert [v["path"] for v in variants] == [str(tiny_onnx.absolute()), str(tiny_artifact.absolute())]
    assert [v["name"] for v in describe_variants([tiny_artifact, tiny_onnx], None)] == [tiny_artifact.name,
                                                                                       tiny_onnx.name]
    assert [v["name"] for v in describe_variants([], baseline=str(tiny_artifact))] == [tiny_artifact.name]


def test_variants_with_the_same_name_are_told_apart_by_their_folder(tmp_path, tiny_artifact):
    first = shutil.copytree(tiny_artifact, tmp_path / "a" / "model")
    second = shutil.copytree(tiny_artifact, tmp_path / "b" / "model")
    assert [v["name"] for v in describe_variants([first, second], None)] == ["a/model", "b/model"]


def test_no_artifacts_or_a_folder_that_is_not_one_fails(tmp_path):
    with pytest.raises(BertcError, match="no artifacts to bench"):
        describe_variants([], None)
    with pytest.raises(BertcError, match="is not a bertc artifact"):
        describe_variants([tmp_path], None)


def test_a_searched_fine_tune_is_summarised_with_its_trials_and_kept_options():
    from bertc.bench.variants import step_summary

    search = {"space": "lr=1e-5:1e-4:log", "train_rows": 4000, "objective": "eval_accuracy",
              "trials": [{"state": "complete"}, {"state": "pruned"}, {"state": "complete"}],
              "best": {"trial": 3, "params": {"lr": 4.2e-05, "schedule": "cosine"}, "eval_accuracy": 0.871}}
    summary = step_summary({"model": {"kind": "pytorch"}, "search": search})
    assert "searched lr=1e-5:1e-4:log in 3 trials on 4000 rows (1 pruned): kept lr=4.2e-05, schedule=cosine, " \
           "87.10% eval accuracy" in summary
    assert "searched" not in step_summary({"model": {"kind": "pytorch"}})
