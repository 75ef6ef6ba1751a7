import json

import pytest

from bertc.artifact import FORMAT_VERSION, check_output, read_manifest, staging_dir, write_manifest
from bertc.errors import BertcError


def test_staging_dir_renames_into_place_and_cleans_up(tmp_path):
    out = tmp_path / "out"
    with staging_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bertc-tmp-")
        (tmp / "f").write_text("new")
    assert (out / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_output_is_kept_without_overwrite_and_on_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_text("old")
    with pytest.raises(BertcError, match="already exists.*--overwrite"):
        with staging_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with staging_dir(out, overwrite=True) as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("crash mid-way")
    assert (out / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with staging_dir(out, overwrite=True) as tmp:
        (tmp / "g").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["g"]


def test_output_that_is_a_file(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(BertcError, match="not a directory"):
        check_output(tmp_path / "x", overwrite=True)


def test_manifest_records_lineage_and_rejects_other_versions(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for directory, parent, stage in ((first, None, "finetune"), (second, first, "prune")):
        directory.mkdir()
        write_manifest(directory, stage=stage, config={"x": 1}, parent=parent, model={"kind": "pytorch"},
                       task={"labels": [0, 1]})
    manifest = read_manifest(second)
    assert manifest["parent"]["stage"] == "finetune" and len(manifest["parent"]["manifest_sha256"]) == 64
    assert [entry["stage"] for entry in manifest["lineage"]] == ["finetune"]
    assert manifest["environment"]["cores"] >= 1 and "torch" in manifest["environment"]["packages"]
    raw = json.loads((second / "bertc.json").read_text())
    raw["format_version"] = FORMAT_VERSION + 1
    (second / "bertc.json").write_text(json.dumps(raw))
    with pytest.raises(BertcError, match="format_version"):
        read_manifest(second)
    with pytest.raises(BertcError, match="not a bertc artifact"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("command", [["prune", "{a}", "--heads", "2"], ["export", "{a}", "--onnx"],
                                     ["distill", "--teacher", "{a}", "--student-layers", "1"]])
def test_a_stage_never_overwrites_its_input(tiny_artifact, tmp_path, command):
    import shutil

    from typer.testing import CliRunner

    from bertc.cli import app

    src = tmp_path / "src"
    shutil.copytree(tiny_artifact, src)
    before = sorted(p.name for p in src.iterdir())
    args = [part.format(a=src) for part in command]
    result = CliRunner().invoke(app, [*args, "--out", str(src), "--overwrite"])
    assert result.exit_code == 2 and "is an input of this stage" in result.output
    assert sorted(p.name for p in src.iterdir()) == before and read_manifest(src)["stage"] == "finetune"
