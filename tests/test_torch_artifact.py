"""PyTorch artifacts: saved with their manifest, loaded back exactly, and damaged weight files named in one line."""

import json
import re
import shutil

import pytest
import torch
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.errors import BertcError
from bertc.modeling import load_pretrained_classifier
from bertc.torch_artifact import load_artifact, load_model, save_artifact

TEXTS = ["the movie was good", "a dull plot"]


def logits(model, tokenizer):
    with torch.no_grad():
        return model.eval()(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits


def test_saved_artifact_loads_back_exactly(tmp_path, tiny_bert_dir):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["neg", "pos"])
    out = save_artifact(tmp_path / "a", model, tokenizer, stage="finetune", config={"x": 1},
                        task={"labels": ["neg", "pos"]}, metrics={"eval": {"accuracy": 0.5}})
    assert {"bertc.json", "config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    artifact = load_artifact(out)
    assert artifact.path == out and artifact.manifest["stage"] == "finetune"
    assert artifact.manifest["model"]["heads_per_layer"] == [4, 4] and artifact.manifest["config"] == {"x": 1}
    torch.testing.assert_close(logits(artifact.model, artifact.tokenizer), logits(model, tokenizer))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the staging directory is gone
    with pytest.raises(BertcError, match="--overwrite"):
        save_artifact(out, model, tokenizer, stage="finetune", config={}, task={"labels": ["neg", "pos"]})


def test_an_onnx_artifact_is_not_loaded_as_pytorch(tmp_path, tiny_artifact):
    copy = shutil.copytree(tiny_artifact, tmp_path / "onnx")
    manifest = json.loads((copy / "bertc.json").read_text())
    manifest["model"]["kind"] = "onnx"
    (copy / "bertc.json").write_text(json.dumps(manifest))
    with pytest.raises(BertcError, match="holds a onnx model, not a PyTorch one"):
        load_artifact(copy)


def damage(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[:len(data) // 2])


@pytest.fixture(params=["empty", "truncated"])
def damaged_artifact(request, tmp_path, tiny_artifact):
    copy = shutil.copytree(tiny_artifact, tmp_path / "damaged")
    damage(copy / "model.safetensors", request.param)
    return copy


def assert_damaged(message: str, file) -> None:
    assert "\n" not in message
    assert re.fullmatch(rf"{re.escape(str(file))} is damaged \(.+\); re-create it", message), message


def test_damaged_weights_are_named_in_one_line(damaged_artifact):
    for load in (load_model, load_artifact):
        with pytest.raises(BertcError) as caught:
            load(damaged_artifact)
        assert_damaged(str(caught.value), damaged_artifact / "model.safetensors")


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_commands_on_damaged_weights_exit_2_with_one_line(damaged_artifact, tiny_data, tmp_path, command):
    args = {"evaluate": ["--data", str(tiny_data / "test.tsv")], "predict": ["a good film"],
            "export": ["--out", str(tmp_path / "onnx")]}[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, [command, str(damaged_artifact), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("bertc: error: ") and "model.safetensors is damaged" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def sharded_copy(tiny_artifact, directory):
    """The artifact with its weights in several safetensors shards and an index."""
    shutil.copytree(tiny_artifact, directory, ignore=shutil.ignore_patterns("model.safetensors"))
    load_model(tiny_artifact).save_pretrained(directory, max_shard_size="50KB")
    shards = sorted(directory.glob("model-*.safetensors"))
    assert len(shards) > 1 and (directory / "model.safetensors.index.json").is_file()
    return directory, shards


def test_a_damaged_shard_or_index_is_named(tmp_path, tiny_artifact):
    directory, shards = sharded_copy(tiny_artifact, tmp_path / "sharded")
    torch.testing.assert_close(logits(load_model(directory), load_artifact(directory).tokenizer),
                               logits(load_model(tiny_artifact), load_artifact(directory).tokenizer))
    damage(shards[-1], "truncated")
    with pytest.raises(BertcError) as caught:
        load_model(directory)
    assert_damaged(str(caught.value), shards[-1])
    shards[-1].unlink()
    with pytest.raises(BertcError, match=f"^{re.escape(str(shards[-1]))} is missing; the model directory is damaged"):
        load_model(directory)
    index = directory / "model.safetensors.index.json"
    index.write_text('{"weight_map": ')
    with pytest.raises(BertcError) as caught:
        load_model(directory)
    assert_damaged(str(caught.value), index)


def test_weights_of_the_wrong_shape_are_refused(tmp_path, tiny_artifact):
    copy = shutil.copytree(tiny_artifact, tmp_path / "edited")
    config = json.loads((copy / "config.json").read_text())
    config["intermediate_size"] = 48  # the saved FFN matrices have 64 rows
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(BertcError, match=r"^weights in .* do not match its config.json \(size mismatch.*re-create it$"):
        load_model(copy)
    assert read_manifest(copy)["stage"] == "finetune"
