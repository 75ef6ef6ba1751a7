import json

import pytest
from typer.testing import CliRunner

from bertc.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def finetune_args(model, train, out, *extra):
    return ["finetune", "--model", model, "--train", train, "--out", out, "--max-steps", "1", "--device", "cpu",
            "--max-length", "16", *extra]


def assert_user_error(result, pattern):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bertc: error:"), result.output
    assert pytest.importorskip("re").search(pattern, lines[0]), lines[0]


@pytest.fixture
def bad_data(tmp_path):
    files = {
        "empty.tsv": "sentence\tlabel\n\t1\n   \t0\n",
        "single.tsv": "sentence\tlabel\na\t1\nb\t1\nc\t1\n",
        "train.tsv": "sentence\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(20)),
        "eval3.tsv": "sentence\tlabel\nx\t0\ny\t2\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, bad_data, tiny_bert_dir):
    model, out = str(tiny_bert_dir), tmp_path / "out"
    assert_user_error(invoke(*finetune_args(model, bad_data / "missing.tsv", out)), "does not exist")
    assert_user_error(invoke(*finetune_args(model, bad_data / "train.tsv", out, "--text-column", "body")),
                      "column 'body' not found")
    assert_user_error(invoke(*finetune_args(model, bad_data / "empty.tsv", out)), "no usable rows")
    assert_user_error(invoke(*finetune_args(model, bad_data / "single.tsv", out)), "single class")
    assert_user_error(invoke(*finetune_args(model, bad_data / "train.tsv", out, "--eval", bad_data / "eval3.tsv")),
                      "never seen in training \\(2\\)")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert_user_error(invoke(*finetune_args(str(tmp_path / "gpt"), bad_data / "train.tsv", out)), "'gpt2' model")
    assert_user_error(invoke(*finetune_args(model, bad_data / "train.tsv", out, "--precision", "fp16")),
                      "fp16 needs CUDA")
    assert_user_error(invoke(*finetune_args(model, bad_data / "train.tsv", out, "--optimizer", "lion")),
                      "--optimizer 'lion'")
    assert not out.exists()


def test_existing_output_is_not_touched(tmp_path, bad_data, tiny_bert_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_user_error(invoke(*finetune_args(str(tiny_bert_dir), bad_data / "train.tsv", out)), "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


def test_debug_shows_the_traceback(tmp_path, tiny_bert_dir):
    result = invoke("--debug", *finetune_args(str(tiny_bert_dir), tmp_path / "missing.tsv", tmp_path / "o"))
    assert result.exit_code != 2 and "BertcError" in repr(result.exception)


def test_evaluate_and_predict(tmp_path, tiny_artifact, tiny_data):
    report_file = tmp_path / "report.json"
    result = invoke("evaluate", tiny_artifact, "--data", tiny_data, "--json", report_file)
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "confusion matrix" in result.output
    report = json.loads(report_file.read_text())
    assert report["samples"] == 60 and sum(map(sum, report["confusion_matrix"])) == 60
    assert report["data"].endswith("test.tsv")

    predictions = tmp_path / "p.json"
    result = invoke("predict", tiny_artifact, "a good film", "a bad plot", "--json", predictions)
    assert result.exit_code == 0, result.output
    rows = json.loads(predictions.read_text())
    assert [r["text"] for r in rows] == ["a good film", "a bad plot"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 and r["label"] in (0, 1) for r in rows)

    result = invoke("predict", tiny_artifact, "--data", tiny_data / "test.tsv", "--json", predictions)
    assert result.exit_code == 0 and len(json.loads(predictions.read_text())) == 60


def test_evaluate_bad_inputs(tmp_path, tiny_artifact, tiny_data):
    assert_user_error(invoke("evaluate", tmp_path, "--data", tiny_data), "not a bertc artifact")
    assert_user_error(invoke("evaluate", tiny_artifact, "--data", tiny_data, "--label-column", "gold"),
                      "column 'gold' not found")
    (tmp_path / "three.tsv").write_text("sentence\tlabel\ngood\t0\nbad\t7\n")
    assert_user_error(invoke("evaluate", tiny_artifact, "--data", tmp_path / "three.tsv"),
                      "labels the model does not know \\(7\\)")
