"""What the commands print: training and compression summaries, evaluation and prediction output, checks first."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from rich.table import Table

from bertc import cli_output
from bertc import console as console_module
from bertc.artifact import write_manifest
from bertc.data.config import Columns
from bertc.errors import BertcError
from bertc.metrics import classification_report


@pytest.fixture
def printed(monkeypatch):
    """Everything cli_output prints (itself or through bertc.console), as plain text."""
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    monkeypatch.setattr(console_module, "console", console)
    monkeypatch.setattr(cli_output, "console", console)
    return out


def artifact(directory, metrics=None, compression=None, task=None):
    directory.mkdir(parents=True)
    write_manifest(directory, stage="prune", config={}, parent=None, model={"kind": "pytorch"},
                   task=task or {"labels": ["neg", "pos"], "text_column": "sentence", "label_column": "label",
                                 "data": {"eval_source": "dev.tsv"}},
                   metrics=metrics or {}, extra={"compression": compression} if compression else None)
    return directory


REPORT = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])


def test_nothing_is_printed_for_a_directory_without_a_manifest(tmp_path, printed):
    # Non-zero ranks of a distributed run return a directory nobody wrote a manifest into.
    cli_output.show_training(tmp_path)
    cli_output.show_compression(tmp_path)
    assert printed.getvalue() == ""


def test_show_training_prints_the_training_table_the_evaluation_and_the_path(tmp_path, printed):
    path = artifact(tmp_path / "a", metrics={"training": {"steps": 12, "loss": 0.123456}, "eval": REPORT})
    cli_output.show_training(path)
    text = printed.getvalue()
    assert "0.1235" in text and "steps" in text  # floats at 4 significant digits
    assert "evaluation on dev.tsv" in text and "accuracy 75.00%" in text
    assert text.rstrip().endswith(f"wrote {path}")


def test_show_compression_prints_sizes_and_every_pruning_step(tmp_path, printed):
    before = {"num_parameters": 1000, "encoder_parameters": 800, "flops": 4000, "heads_per_layer": [4, 4],
              "ffn_per_layer": [64, 64]}
    after = {"num_parameters": 600, "encoder_parameters": 400, "flops": 1000, "heads_per_layer": [2, 2],
             "ffn_per_layer": [32, 32], "flops_seq_len": 128}
    ratios = {"num_parameters": 0.6, "encoder_parameters": 0.5, "flops": 0.25}
    steps = [{"step": 1, "eval_accuracy_after_pruning": 0.8, "recovery": {"best_eval_accuracy": 0.9}},
             {"step": 2, "eval_accuracy_after_pruning": 0.7}]
    path = artifact(tmp_path / "a", metrics={"steps": steps}, compression={"before": before, "after": after,
                                                                           "ratios": ratios})
    cli_output.show_compression(path)
    text = printed.getvalue()
    assert "size (FLOPs at 128 tokens)" in text
    assert "1,000 -> 600 (x0.600)" in text and "4,000 -> 1,000 (x0.250)" in text
    assert "[4, 4] -> [2, 2]" in text and "[64, 64] -> [32, 32]" in text
    assert "pruning step 1: eval accuracy 80.00% after pruning, 90.00% after recovery" in text
    assert "pruning step 2: eval accuracy 70.00% after pruning\n" in text  # no recovery: nothing more said
    assert text.rstrip().endswith(f"wrote {path}")


def test_evaluate_checks_the_json_path_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_output, "evaluate", lambda *a, **k: pytest.fail("evaluated despite a bad --json"))
    path = artifact(tmp_path / "a")
    options = dict(text_column=None, text_pair_column=None, label_column=None, split="test", max_samples=None,
                   device="cpu", batch_size=8)
    (tmp_path / "file").write_text("")
    with pytest.raises(BertcError, match="--json .* is inside .*file, which is a file"):
        cli_output.evaluate_and_show(path, "d.tsv", json_out=tmp_path / "file" / "r.json", **options)
    with pytest.raises(BertcError, match="--json .* is a directory; pass a file name"):
        cli_output.evaluate_and_show(path, "d.tsv", json_out=tmp_path, **options)


def test_evaluate_uses_the_artifacts_columns_unless_given_and_writes_the_report(tmp_path, monkeypatch, printed):
    calls = []

    def evaluate(artifact, data, *, columns, split, max_samples, device, batch_size):
        calls.append((columns, split, max_samples, device, batch_size))
        return {**REPORT, "data": data}

    monkeypatch.setattr(cli_output, "evaluate", evaluate)
    path = artifact(tmp_path / "a")
    cli_output.evaluate_and_show(path, "d.tsv", None, None, "y", "validation", 10, "cpu", 8, tmp_path / "r.json")
    assert calls == [(Columns("sentence", None, "y"), "validation", 10, "cpu", 8)]
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps({**REPORT, "data": "d.tsv"}))
    text = printed.getvalue()
    assert f"{path} on d.tsv" in text and "confusion matrix" in text and f"wrote {tmp_path / 'r.json'}" in text


def fake_predictions(count):
    return [{"text": f"text {i}", "label": "pos", "probabilities": {"neg": 0.25, "pos": 0.75}} for i in range(count)]


def test_predict_shows_fifty_rows_and_says_where_the_rest_are(tmp_path, monkeypatch, printed):
    monkeypatch.setattr(cli_output, "predict", lambda path, texts, pairs, **kw: fake_predictions(len(texts)))
    cli_output.predict_and_show(tmp_path, [f"t{i}" for i in range(53)], None, None, None, None, "cpu", 8, None)
    text = printed.getvalue()
    assert "text 49" in text and "text 50" not in text and "0.750" in text
    assert "... 3 more (use --json)" in text
    printed.truncate(0)
    printed.seek(0)
    cli_output.predict_and_show(tmp_path, ["a"] * 51, None, None, None, None, "cpu", 8, tmp_path / "p.json")
    assert f"... 1 more in {tmp_path / 'p.json'}" in printed.getvalue()
    assert len(json.loads((tmp_path / "p.json").read_text())) == 51


def test_predict_reads_texts_and_pairs_from_a_data_file(tmp_path, monkeypatch, printed):
    seen = []
    monkeypatch.setattr(cli_output, "predict",
                        lambda path, texts, pairs, **kw: seen.append((texts, pairs)) or fake_predictions(len(texts)))
    monkeypatch.setattr(cli_output, "model_manifest", lambda path: (path, {"task": {}}))  # no recorded columns
    data = tmp_path / "pairs.tsv"
    data.write_text("question\tsentence\nwho?\tme\nwhy?\tbecause\n")
    cli_output.predict_and_show(tmp_path, None, None, str(data), "question", "sentence", "cpu", 8, None)
    assert seen == [(["who?", "why?"], ["me", "because"])]


def test_predict_refuses_texts_and_data_together_and_columns_without_data(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_output, "predict", lambda *a, **k: pytest.fail("predicted despite bad options"))
    with pytest.raises(BertcError, match=r"^give texts \(with --pair\) or --data PATH, not both$"):
        cli_output.predict_and_show(tmp_path, ["a"], None, "d.tsv", None, None, "cpu", 8, None)
    with pytest.raises(BertcError, match="^--text-column and --text-pair-column name columns of --data PATH"):
        cli_output.predict_and_show(tmp_path, ["a"], None, None, "review", None, "cpu", 8, None)


def test_predict_passes_pairs_and_warns_once_about_empty_texts(tmp_path, monkeypatch, printed):
    seen = []
    monkeypatch.setattr(cli_output, "predict", lambda path, texts, pairs, **kw: seen.append((texts, pairs)) or [
        {"text": text, "label": "pos", "probabilities": {"pos": 1.0}} for text in texts])
    cli_output.predict_and_show(tmp_path, ["a", " ", "c"], ("x", "y", ""), None, None, None, "cpu", 8, None)
    assert seen == [(["a", " ", "c"], ["x", "y", ""])]
    assert "warning: 2 of 3 texts are empty (number 2, 3); their labels are guesses from no text" in \
        printed.getvalue().replace("\n", " ")
    printed.truncate(0)
    printed.seek(0)
    cli_output.predict_and_show(tmp_path, ["a"], None, None, None, None, "cpu", 8, None)
    assert "warning" not in printed.getvalue()


def test_the_empty_text_warning_lists_at_most_ten_numbers(printed):
    cli_output.warn_empty([{"text": ""}] * 12, None)
    assert "12 of 12 texts are empty (number 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...)" in printed.getvalue()


def test_show_bench_prints_every_table_then_the_file(monkeypatch, printed, tmp_path):
    tables = [Table("latency"), Table("accuracy")]
    monkeypatch.setattr(cli_output, "console_tables", lambda results: tables)
    cli_output.show_bench({}, tmp_path / "bench.json")
    text = printed.getvalue()
    assert text.index("latency") < text.index("accuracy") < text.index(f"wrote {tmp_path / 'bench.json'}")
