import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.data.config import DataConfig
from bertc.data.load import read_texts
from bertc.finetune.config import FinetuneConfig
from bertc.finetune.finetune import finetune
from bertc.inference.evaluation import predict, predict_texts
from bertc.inference.registry import load_predictor
from tests.conftest import quick_train_config, write_tsv

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


@pytest.fixture(scope="module")
def pair_artifact(tmp_path_factory, tiny_bert_dir):
    data = tmp_path_factory.mktemp("pairs")
    write_tsv(data / "train.tsv", 80, seed=1, pairs=True)
    write_tsv(data / "validation.tsv", 20, seed=2, pairs=True)
    write_tsv(data / "test.tsv", 20, seed=3, pairs=True)
    config = FinetuneConfig(data=DataConfig(train=str(data)), train=quick_train_config(max_steps=10, lr=2e-3))
    return finetune(tiny_bert_dir, config, data / "artifact"), data / "test.tsv"


def test_predict_uses_the_second_sentence_of_a_pair(tmp_path, pair_artifact):
    artifact, pairs = pair_artifact
    out = tmp_path / "p.json"
    result = invoke("predict", artifact, "--data", pairs, "--json", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    texts, seconds = read_texts(str(pairs))
    assert seconds is not None and [row["text"] for row in rows] == texts
    with_pairs, alone = predict(artifact, texts, seconds), predict_texts(load_predictor(artifact), texts)
    assert [row["probabilities"] for row in rows] == [row["probabilities"] for row in with_pairs]
    assert [row["probabilities"] for row in rows] != [row["probabilities"] for row in alone]
    # evaluate scores the same predictions: its confusion matrix columns count predict's labels
    report = tmp_path / "r.json"
    assert invoke("evaluate", artifact, "--data", pairs, "--json", report).exit_code == 0
    matrix = json.loads(report.read_text())["confusion_matrix"]
    labels = read_manifest(artifact)["task"]["labels"]
    assert [sum(row[i] for row in matrix) for i in range(len(labels))] == \
        [sum(str(row["label"]) == str(label) for row in rows) for label in labels]
    # texts on the command line carry their pair with --pair, one per text
    result = invoke("predict", artifact, texts[0], texts[1], "--pair", seconds[0], "--pair", seconds[1],
                    "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == with_pairs[:2]
    assert_user_error(invoke("predict", artifact, texts[0], texts[1], "--pair", seconds[0]),
                      "2 texts but 1 second texts")
    # a pair model given texts alone is refused, not run on half its input
    assert_user_error(invoke("predict", artifact, texts[0], texts[1]), "^bertc: error: this model reads sentence "
                      "pairs; give --pair for each text or --data with the pair column$")
    (tmp_path / "firsts.tsv").write_text("sentence1\n" + "\n".join(texts) + "\n")
    assert_user_error(invoke("predict", artifact, "--data", tmp_path / "firsts.tsv"), "reads sentence pairs")


def test_predict_reads_a_pair_model_s_own_columns_from_data(tmp_path, pair_artifact):
    """Columns auto-detection does not know: predict takes the ones the artifact was trained with."""
    artifact, pairs = pair_artifact
    renamed = tmp_path / "renamed"
    shutil.copytree(artifact, renamed)
    manifest = json.loads((renamed / "bertc.json").read_text())
    manifest["task"].update(text_column="left", text_pair_column="right", label_column="gold")
    (renamed / "bertc.json").write_text(json.dumps(manifest))
    data = tmp_path / "renamed.tsv"
    data.write_text(pairs.read_text().replace("sentence1\tsentence2\tlabel", "left\tright\tgold", 1))
    texts, seconds = read_texts(str(pairs))
    out = tmp_path / "p.json"
    result = invoke("predict", renamed, "--data", data, "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == predict(artifact, texts, seconds)
    # a file without the artifact's columns is still read by auto-detection
    result = invoke("predict", renamed, "--data", pairs, "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == predict(artifact, texts, seconds)


def test_predict_refuses_pairs_for_a_single_text_model(tmp_path, tiny_artifact):
    assert_user_error(invoke("predict", tiny_artifact, "a good film", "--pair", "a bad one"),
                      "^bertc: error: this model reads single texts, not sentence pairs")
    (tmp_path / "pairs.tsv").write_text("sentence1\tsentence2\na good film\ta bad one\n")
    assert_user_error(invoke("predict", tiny_artifact, "--data", tmp_path / "pairs.tsv"), "reads single texts")
    result = invoke("predict", tiny_artifact, "--data", tmp_path / "pairs.tsv", "--text-column", "sentence1")
    assert result.exit_code == 0, result.output


def test_predict_warns_about_empty_texts_and_still_answers(tmp_path, tiny_artifact):
    out = tmp_path / "p.json"
    result = invoke("predict", tiny_artifact, "", "   ", "a good film", "--json", out)
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 3 texts are empty" in result.output
    assert len(json.loads(out.read_text())) == 3
    result = invoke("predict", tiny_artifact, "a good film")
    assert result.exit_code == 0 and "warning" not in result.output


def test_training_labels_written_as_text_and_evaluation_labels_as_numbers(tmp_path, tiny_bert_dir, tiny_data):
    rows = "".join(f"good film {i}\t1\nbad film {i}\t0\nodd film {i}\tmaybe\n" for i in range(10))
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + rows)
    result = invoke(*finetune_args(str(tiny_bert_dir), tmp_path / "train.tsv", tmp_path / "out", "--eval",
                                   tiny_data / "validation.tsv"))
    assert result.exit_code == 0, result.output


def test_a_run_that_fails_after_building_keeps_its_stages_and_says_how_to_resume(tmp_path, tiny_artifact,
                                                                                tiny_data):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[recipe]\nformat = "bertc-recipe"\nversion = 1\nbaseline = "{tiny_artifact.absolute()}"\n'
        f'candidates = []\n\n[bench]\ndata = "{tiny_data / "validation.tsv"}"\nsplit = "validation"\n\n'
        f'[[stages]]\nname = "onnx"\nkind = "export"\ninput = "{tiny_artifact.absolute()}"\n'
        '[stages.config]\nverify_samples = 8\n\n'
        '[[stages]]\nname = "pruned"\nkind = "prune"\ninput = "onnx"\n[stages.config]\nheads = 2\n')
    out = tmp_path / "out"
    result = invoke("run", recipe, "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.splitlines()  # stdout says which stages ran
    assert len(lines) == 1 and re.search("not a PyTorch one.*kept in .*--resume", lines[0]), result.stderr
    assert (out / "stages" / "onnx" / "model.onnx").is_file() and not (out / "stages" / "pruned").exists()
