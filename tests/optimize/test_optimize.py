"""`bertc optimize` and `bertc run` end to end on the tiny model, resume, and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertc.artifact import is_artifact, read_manifest
from bertc.cli import app
from bertc.errors import BertcError
from bertc.inference.evaluation import predict
from bertc.optimize import runtimes
from bertc.optimize.config import OptimizeConfig, SelectConfig, parse_duration
from bertc.optimize.optimize import optimize

CANDIDATES = ("base:int8-dynamic", "layers1:int8-dynamic", "heads2:int8-dynamic")
TEXTS = ["the movie was good", "a very boring and awful plot", "it is fine", "really great acting"]


def tiny_config(data: Path, model: Path | None = None, **overrides) -> OptimizeConfig:
    """Settings that make the tiny task learnable in seconds; budgets generous enough for a random-weight model."""
    options = dict(train=str(data), model=str(model) if model else None, preset="quick", candidates=CANDIDATES,
                   finetune_epochs=3.0, lr=2e-3, batch_size=16, max_length=32, distill_samples=64,
                   recover_samples=64, importance_samples=32, bench_runs=10, max_accuracy_drop=5.0, exhaustive=True)
    options.update(overrides)
    return OptimizeConfig(**options)


def without_openvino(monkeypatch) -> None:
    """As where the openvino extra is not installed: ONNX Runtime only (tests/optimize/test_serve_batch.py runs
    both runtimes)."""
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)


@pytest.fixture(scope="module")
def optimized(tmp_path_factory, tiny_artifact, tiny_data):
    """optimize from the (session-wide) fine-tuned tiny artifact: the standard recipe and a distilled student."""
    out = tmp_path_factory.mktemp("optimize") / "run"
    config = tiny_config(tiny_data, start_from=str(tiny_artifact), candidates=CANDIDATES[:2])
    with pytest.MonkeyPatch.context() as monkeypatch:
        without_openvino(monkeypatch)
        return out, optimize(config, out)


def test_pipeline_keeps_every_stage_and_ships_the_winner(optimized, tiny_artifact):
    out, summary = optimized
    state = json.loads((out / "optimize.json").read_text())
    built = ["base-onnx", "base-int8-dynamic", "layers1", "layers1-onnx", "layers1-int8-dynamic"]
    assert list(state["nodes"]) == ["from", *built] and state["finished"]
    for name in built:
        assert is_artifact(out / "stages" / name)
        assert 0 <= state["nodes"][name]["selection_accuracy"] <= 1
    assert read_manifest(out / "stages" / "layers1")["model"]["heads_per_layer"] == [4]
    assert [step["stage"] for step in read_manifest(out / "stages" / "layers1-int8-dynamic")["lineage"]][-3:] == \
        ["finetune", "distill", "export"]
    assert [s["name"] for s in state["candidates"]] == ["base-int8-dynamic", "layers1-int8-dynamic"]
    rows = {row["name"]: row for row in summary["rows"]}
    assert set(rows) == {tiny_artifact.name, "base-int8-dynamic", "layers1-int8-dynamic"}
    assert rows[tiny_artifact.name]["baseline"] and all("test_accuracy" in row for row in rows.values())
    assert rows["base-int8-dynamic"]["vs_standard"] == 1.0
    # An int8 ONNX model within the generous budget beats PyTorch eager: best/ is a copy of it, with extras.
    assert not summary["shipped_baseline"] and summary["winner"] in ("base-int8-dynamic", "layers1-int8-dynamic")
    shipped = {p.name for p in Path(rows[summary["winner"]]["path"]).iterdir() if p.is_file()}
    assert {"model.onnx", "tokenizer.json", "bertc.json"} <= shipped and "model.safetensors" not in shipped
    assert {p.name for p in (out / "best").iterdir()} == shipped | {"labels.json", "serve.py", "README.md"}
    assert summary["winner"] in rows and (out / "report" / "report.html").is_file()
    assert (out / "summary.md").read_text().startswith("# bertc optimize")
    # without the openvino extra, one note says OpenVINO was not measured (not an error)
    assert [note for note in summary["notes"] if "OpenVINO was not measured" in note] == summary["notes"] != []
    assert summary["notes"][0] in (out / "summary.md").read_text()
    recipe = (out / "recipe.toml").read_text()
    assert [line.split('"')[1] for line in recipe.splitlines() if line.startswith("name = ")] == built
    assert f'baseline = "{tiny_artifact.absolute()}"' in recipe


def test_serving_script_gives_bertc_labels(optimized):
    best = optimized[0] / "best"
    check = "\nassert not any(m == 'bertc' or m.startswith('bertc.') for m in sys.modules)\n"
    script = (best / "serve.py").read_text()
    if "onnxruntime" in script:  # the ONNX script must not need bertc
        script = script.replace('if __name__ == "__main__":', check + 'if __name__ == "__main__":')
    script = script.replace("Path(__file__)", f"Path({str(best / 'serve.py')!r})")
    result = subprocess.run([sys.executable, "-c", script, *TEXTS], capture_output=True, text=True, check=True)
    labels = [line.split("\t")[0] for line in result.stdout.strip().splitlines()]
    assert labels == [str(row["label"]) for row in predict(best, TEXTS)]


def test_resume_skips_finished_stages(optimized, tiny_artifact, tiny_data, monkeypatch):
    without_openvino(monkeypatch)
    out, _ = optimized
    manifests = {p.parent.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*/bertc.json")}
    config = tiny_config(tiny_data, start_from=str(tiny_artifact), candidates=CANDIDATES[:2], time_budget=600.0)
    optimize(config, out, resume=True)
    state = json.loads((out / "optimize.json").read_text())
    assert {state["nodes"][name]["status"] for name in manifests} == {"reused"}
    assert manifests == {p.parent.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*/bertc.json")}
    with pytest.raises(BertcError, match="different options.*max_accuracy_drop"):
        optimize(dataclasses.replace(config, max_accuracy_drop=2.0), out, resume=True)


def test_resume_of_a_run_recorded_without_per_row_correctness(optimized, tiny_artifact, tiny_data, monkeypatch):
    """A run an older bertc recorded (accuracy per node, not which rows): its nodes are scored again on resume, and
    every difference in the summary comes with its paired interval."""
    without_openvino(monkeypatch)
    out, _ = optimized
    state = json.loads((out / "optimize.json").read_text())
    for node in state["nodes"].values():
        node.pop("selection_correct", None)
        node.pop("selection_delta", None)
    (out / "optimize.json").write_text(json.dumps(state))
    config = tiny_config(tiny_data, start_from=str(tiny_artifact), candidates=CANDIDATES[:2], time_budget=600.0)
    summary = optimize(config, out, resume=True)
    nodes = json.loads((out / "optimize.json").read_text())["nodes"]
    assert {len(node["selection_correct"]) for node in nodes.values()} == {60}  # the tiny validation.tsv
    assert all(nodes[name]["selection_delta"]["rows"] == 60 for name in nodes if name != "from")
    candidates = [row for row in summary["rows"] if not row["baseline"]]
    assert candidates and all(row["selection_delta"]["rows"] == row["test_delta"]["rows"] == 60 for row in candidates)
    assert f"shipped {summary['winner']}" in (out / "summary.md").read_text()


def same_stages(first: Path, second: Path) -> None:
    """Both runs built the same stages with the same options, accuracies and weights."""
    assert sorted(p.name for p in (first / "stages").iterdir() if is_artifact(p)) == \
        sorted(p.name for p in (second / "stages").iterdir() if is_artifact(p))
    for stage in (first / "stages").iterdir():
        if not is_artifact(stage):
            continue
        again = second / "stages" / stage.name
        first_manifest, second_manifest = read_manifest(stage), read_manifest(again)
        assert first_manifest["config"] == second_manifest["config"]
        assert first_manifest["metrics"]["eval"]["accuracy"] == second_manifest["metrics"]["eval"]["accuracy"]
        weights = [f"{d}/model.safetensors" for d in (stage, again)]
        if Path(weights[0]).is_file():  # seeded training: the recipe reproduces the artifact bit for bit
            assert len({hashlib.sha256(Path(w).read_bytes()).hexdigest() for w in weights}) == 1


def test_run_of_the_written_recipe_rebuilds_the_same_stages(optimized, tmp_path):
    out, _ = optimized
    result = CliRunner().invoke(app, ["run", str(out / "recipe.toml"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    same_stages(out, tmp_path / "again")
    assert (tmp_path / "again" / "best" / "serve.py").is_file() and "shipped" in result.output


@pytest.mark.slow
def test_whole_pipeline_from_a_pretrained_model(tmp_path, tiny_bert_dir, tiny_data, monkeypatch):
    """Fine-tune, distil, prune, export, quantize, bench, report, ship; then `bertc run` of its recipe."""
    without_openvino(monkeypatch)
    out = tmp_path / "run"
    summary = optimize(tiny_config(tiny_data, tiny_bert_dir), out)
    state = json.loads((out / "optimize.json").read_text())
    assert list(state["nodes"]) == ["finetune", "base-onnx", "base-int8-dynamic", "layers1", "layers1-onnx",
                                    "layers1-int8-dynamic", "heads2", "heads2-onnx", "heads2-int8-dynamic"]
    assert read_manifest(out / "stages" / "heads2")["model"]["heads_per_layer"] == [2, 2]
    assert {row["name"] for row in summary["rows"]} == {"finetune", "base-int8-dynamic", "layers1-int8-dynamic",
                                                        "heads2-int8-dynamic"}
    result = CliRunner().invoke(app, ["run", str(out / "recipe.toml"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    same_stages(out, tmp_path / "again")


def test_parse_duration():
    assert parse_duration("30m") == 1800 and parse_duration("1.5h") == 5400 and parse_duration("90") == 5400
    assert parse_duration("1h30m") == 5400 and parse_duration("900s") == 900
    for bad in ("soon", "-5m", "0", "5 parsecs", "1h30"):
        with pytest.raises(BertcError, match="--time-budget"):
            parse_duration(bad)


@pytest.mark.parametrize("args, message", [
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop must be at least 0"),
    (["--max-accuracy-drop", "abc"], "--max-accuracy-drop must be a number"),
    (["--max-accuracy-drop", "nan"], "--max-accuracy-drop must be a finite number"),
    (["--latency-budget-ms", "0"], "--latency-budget-ms must be above 0"),
    (["--time-budget", "soon"], "--time-budget must be a duration"),
    (["--time-budget", "1s"], "too small to fine-tune even once"),
    (["--candidates", "layers2"], "keeps all or more than the model's 2 layers"),
    (["--resume"], "nothing to resume"),
    (["--from", "/nowhere"], "give --model .* or --from"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_bert_dir, tiny_data, args, message):
    out = tmp_path / "out"
    command = ["optimize", "--train", str(tiny_data), "--model", str(tiny_bert_dir), "--out", str(out), *args]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message.split(".*")[0].strip() in result.output
    assert not out.exists()


def test_different_label_sets_and_existing_outputs_exit_2_and_lose_nothing(tmp_path, tiny_bert_dir, tiny_data):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text((tiny_data / "train.tsv").read_text())
    (data / "validation.tsv").write_text("sentence\tlabel\nthe movie was good\t1\nit was meh\t2\n")
    runner = CliRunner()
    base = ["optimize", "--train", str(data), "--model", str(tiny_bert_dir), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "different label sets" in result.output and not (tmp_path / "out").exists()
    (data / "validation.tsv").write_text("sentence\tlabel\n")  # an empty selection set is named as such
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "validation.tsv has no labelled rows" in result.output
    assert not (tmp_path / "out").exists()
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine")
    for flags, message in (([], "already exists"), (["--overwrite"], "not a bertc optimize output")):
        command = ["optimize", "--train", str(tiny_data), "--out", str(keep), *flags]
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and message in result.output
        assert (keep / "precious.txt").read_text() == "mine"


def test_cuda_target_without_a_gpu_exits_2(tmp_path, tiny_bert_dir, tiny_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the check under test is for machines without one")
    command = ["optimize", "--train", str(tiny_data), "--model", str(tiny_bert_dir), "--out", str(tmp_path / "out"),
               "--target", "cuda"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and "--target cuda needs a CUDA GPU" in result.output
    assert not (tmp_path / "out").exists()


def test_a_hand_written_recipe_with_nothing_to_beat_the_baseline_ships_the_baseline(tmp_path, tiny_artifact,
                                                                                  tiny_data):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[recipe]\nformat = "bertc-recipe"\nversion = 1\nbaseline = "{tiny_artifact.absolute()}"\n'
                      f'candidates = []\n\n[select]\nmax_accuracy_drop = 0.5\n\n[bench]\n'
                      f'data = "{tiny_data / "validation.tsv"}"\nsplit = "validation"\nbatch_sizes = [1]\n'
                      'warmup = 1\nruns = 5\nrounds = 5\nmemory = false\n')
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Nothing beats the fine-tuned baseline" in result.output
    best = tmp_path / "out" / "best"
    assert read_manifest(best)["model"]["kind"] == "pytorch" and (best / "model.safetensors").is_file()
    shipped = {p.name for p in tiny_artifact.iterdir() if p.is_file()}
    assert {p.name for p in best.iterdir()} == shipped | {"labels.json", "serve.py", "README.md"}
    printed = subprocess.run([sys.executable, str(best / "serve.py"), *TEXTS], capture_output=True, text=True,
                             check=True).stdout
    assert [line.split("\t")[0] for line in printed.strip().splitlines()] == \
        [str(row["label"]) for row in predict(tiny_artifact, TEXTS)]


def test_time_budget_skips_candidates_that_do_not_fit(tmp_path, tiny_artifact, tiny_data):
    config = tiny_config(tiny_data, start_from=str(tiny_artifact), candidates=("heads2:int8-dynamic",),
                         time_budget=1.0)
    summary = optimize(config, tmp_path / "out")
    state = json.loads((tmp_path / "out" / "optimize.json").read_text())
    # the standard recipe is added to the candidates given, as the reference
    assert [c["name"] for c in state["candidates"]] == ["base-int8-dynamic", "heads2-int8-dynamic"]
    assert all(c["status"] == "skipped" and "time budget" in c["reason"] for c in state["candidates"])
    assert summary["shipped_baseline"] and not any((tmp_path / "out" / "stages").iterdir())


def test_a_warning_that_the_selection_texts_are_unlike_the_test_texts_reaches_the_summary(tmp_path, tiny_artifact,
                                                                                          tiny_data):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        shutil.copy(tiny_data / f"{split}.tsv", data / f"{split}.tsv")
    rows = (tiny_data / "test.tsv").read_text().splitlines()
    long_rows = [f"{text} {text} {text} {text}\t{label}" for text, label in (row.split("\t") for row in rows[1:])]
    (data / "test.tsv").write_text("\n".join([rows[0], *long_rows]) + "\n")
    config = tiny_config(data, start_from=str(tiny_artifact), candidates=("heads2:int8-dynamic",), time_budget=1.0)
    summary = optimize(config, tmp_path / "out")
    [warning] = [note for note in summary["notes"] if "median" in note]
    assert warning.startswith("warning: the selection rows are a median") and "the test rows" in warning
    assert warning in (tmp_path / "out" / "summary.md").read_text()


def test_the_configs_refuse_bad_choices_and_ranges_all_at_once():
    """A library call or a recipe is refused like the CLI: every problem in one error, each named once."""
    with pytest.raises(BertcError) as caught:
        OptimizeConfig(train="/d", target="tpu", preset="huge", max_accuracy_drop=-1.0, batch_size=0, lr="fast",
                       time_budget=0.0)
    message = str(caught.value)
    for part in ("--target 'tpu' is not one of cpu, cuda", "--preset 'huge' is not one of quick, full",
                 "--max-accuracy-drop must be at least 0, got -1", "--batch-size must be a whole number of at least "
                 "1, got 0", "--lr must be a number, got 'fast'", "--time-budget (seconds) must be above 0"):
        assert part in message
    assert message.count("--lr") == 1
    with pytest.raises(BertcError) as caught:
        SelectConfig(max_accuracy_drop=float("nan"), latency_budget_ms=0.0, test_samples=0)
    assert str(caught.value) == ("--max-accuracy-drop must be a finite number, got nan; --latency-budget-ms must be "
                                 "above 0, got 0; --test-samples must be at least 1, got 0")
