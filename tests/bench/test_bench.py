from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertc.bench.bench import bench
from bertc.bench.config import BenchConfig
from bertc.bench.results import RESULTS_VERSION, read_results
from bertc.bench.standard import unpruned_parent
from bertc.cli import app
from bertc.errors import BertcError
from bertc.export.config import QuantizeConfig, TorchDynamicConfig
from bertc.export.quantize import quantize
from bertc.inference.evaluation import evaluate
from tests.bench.conftest import deny_writes_in, quick_bench_config


def test_results_hold_every_figure_for_every_variant_and_setting(tiny_results, tiny_artifact, tiny_onnx):
    results = read_results(tiny_results)
    assert results["format_version"] == RESULTS_VERSION
    assert results["baseline"] == tiny_artifact.name
    assert results["settings"] == [{"batch_size": 1, "seq_len": "real"}, {"batch_size": 4, "seq_len": "real"},
                                   {"batch_size": 1, "seq_len": 16}, {"batch_size": 4, "seq_len": 16}]
    env = results["environment"]
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["cpu"] and "torch" in env["packages"]
    torch_variant, onnx_variant = results["variants"]
    assert (torch_variant["backend"], onnx_variant["backend"]) == ("pytorch-eager", "onnxruntime")
    assert onnx_variant["variant"] == "fp32"
    for variant in results["variants"]:
        assert variant["size_bytes"] > 0 and variant["num_parameters"] > 1000
        assert len(variant["latency"]) == 4
        for row in variant["latency"]:
            assert row["runs"] == 6 and len(row["round_p50_ms"]) == 3
            assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
            assert row["throughput"] > 0
        fixed = [row for row in variant["latency"] if row["seq_len"] == 16]
        assert all(row["padded_length_mean"] == row["tokens_per_row_mean"] == 16 for row in fixed)
    assert all(row["speedup"] == row["speedup_min"] == row["speedup_max"] == 1 for row in torch_variant["latency"])
    for row in onnx_variant["latency"]:  # the stored figure is the median of the per-round ratios it spans
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
    assert env["threads_from"] in ("--threads", "all usable cores") and "omp_num_threads" in env
    assert [step["stage"] for step in onnx_variant["lineage"]][-2:] == ["finetune", "export"]


def test_accuracy_matches_bertc_evaluate(tiny_results, tiny_artifact, tiny_data):
    results = read_results(tiny_results)
    expected = evaluate(tiny_artifact, str(tiny_data), split="test")
    torch_variant, onnx_variant = results["variants"]
    assert torch_variant["accuracy"] == pytest.approx(expected["accuracy"])
    assert torch_variant["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert torch_variant["samples"] == expected["samples"] == 60
    # the ONNX export of the same weights predicts the same labels
    assert onnx_variant["accuracy"] == pytest.approx(torch_variant["accuracy"], abs=1 / 60)
    assert onnx_variant["vs_baseline"]["accuracy_delta_points"] == pytest.approx(
        100 * (onnx_variant["accuracy"] - torch_variant["accuracy"]))


def test_baseline_option_puts_that_variant_first(tmp_path, tiny_artifact, tiny_onnx, tiny_data):
    out = tmp_path / "r.json"
    config = quick_bench_config(tiny_data, baseline=str(tiny_onnx), batch_sizes=(1,), seq_lens=("real",),
                                accuracy=False)
    results = bench([tiny_artifact], config, out)
    assert [v["name"] for v in results["variants"]] == [tiny_onnx.name, tiny_artifact.name]
    assert results["baseline"] == tiny_onnx.name
    assert "accuracy" not in results["variants"][0]
    assert json.loads(out.read_text())["baseline"] == tiny_onnx.name


def test_memory_is_recorded_per_variant(tmp_path, tiny_onnx, tiny_data):
    config = quick_bench_config(tiny_data, batch_sizes=(2,), seq_lens=(8, 12), runs=2, rounds=1, memory=True)
    results = bench([tiny_onnx], config, tmp_path / "r.json")
    memory = results["variants"][0]["memory"]
    assert memory["batch_shape"] == [2, 12]  # the costliest batch any setting timed
    assert memory["peak_rss_bytes"] > memory["model_rss_bytes"] > 0


def test_existing_results_are_not_overwritten(tmp_path, tiny_artifact, tiny_data):
    out = tmp_path / "r.json"
    out.write_text("keep me")
    with pytest.raises(BertcError, match="already exists"):
        bench([tiny_artifact], quick_bench_config(tiny_data), out)
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("problem, match", [
    ("not-an-artifact", "is not a bertc artifact"),
    ("unknown-column", "column 'review' not found"),
    ("pair-column", "does not know a second text column"),
    ("unknown-labels", "labels the model does not know"),
    ("too-long", "--seq-len 4096 is longer"),
])
def test_bad_input_fails_before_any_timing(problem, match, tmp_path, tiny_artifact, tiny_data):
    artifacts, config = [tiny_artifact], quick_bench_config(tiny_data)
    if problem == "not-an-artifact":
        artifacts = [tmp_path]
    elif problem == "unknown-column":
        config = quick_bench_config(tiny_data, text_column="review")
    elif problem == "pair-column":
        config = quick_bench_config(tiny_data, text_pair_column="sentence")
    elif problem == "unknown-labels":
        (tmp_path / "test.tsv").write_text("sentence\tlabel\ngood film\tpositive\nbad film\tnegative\n")
        config = quick_bench_config(tmp_path / "test.tsv")
    elif problem == "too-long":
        config = quick_bench_config(tiny_data, seq_lens=(4096,))
    out = tmp_path / "r.json"
    with pytest.raises(BertcError, match=match):
        bench(artifacts, config, out)
    assert not out.exists()


def test_cuda_without_a_gpu_fails_before_any_work(tmp_path, tiny_artifact, tiny_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BertcError, match="--device cuda"):
        bench([tiny_artifact], quick_bench_config(tiny_data, device="cuda"), tmp_path / "r.json")


def test_config_collects_every_problem():
    with pytest.raises(BertcError) as err:
        BenchConfig(data="x", batch_sizes=(0,), seq_lens=("long",), runs=0, device="tpu")
    message = str(err.value)
    for flag in ("--device", "--batch-sizes", "--seq-len", "--runs"):
        assert flag in message


def test_config_checks_types_and_choices_with_the_ranges():
    with pytest.raises(BertcError) as err:
        BenchConfig(data="x", split="dev", threads="2", batch_sizes=(1, "8"), warmup=-1)
    message = str(err.value)
    assert "--split 'dev' is not one of train, validation, test" in message
    assert "--threads must be a whole number, got '2'" in message
    assert "--batch-sizes has an entry that must be a whole number" in message
    assert "--warmup must be at least 0, got -1" in message and "\n" not in message


def test_option_lists_parse():
    """The bench's list options as the CLI parses them (bertc.cli_options) and BenchConfig checks them."""
    from bertc.cli import BENCH
    from bertc.cli_options import build_config

    values = {o.name: o.default for o in BENCH} | {"data": "d", "batch_sizes": "1, 8,32", "seq_len": "real,128"}
    config = build_config(BenchConfig, BENCH, values)
    assert config.batch_sizes == (1, 8, 32) and config.seq_lens == ("real", 128)
    with pytest.raises(BertcError, match="--seq-len"):
        build_config(BenchConfig, BENCH, values | {"seq_len": "real,long"})
    with pytest.raises(BertcError, match="--batch-sizes"):
        build_config(BenchConfig, BENCH, values | {"batch_sizes": "1,x"})


def test_results_of_another_format_version_are_refused(tmp_path, tiny_results):
    results = json.loads(tiny_results.read_text())
    results["format_version"] = RESULTS_VERSION + 1
    other = tmp_path / "future.json"
    other.write_text(json.dumps(results))
    with pytest.raises(BertcError, match=f"format version {RESULTS_VERSION + 1}"):
        read_results(other)
    (tmp_path / "plain.json").write_text("{}")
    with pytest.raises(BertcError, match="not a bertc bench results file"):
        read_results(tmp_path / "plain.json")


def test_standard_recipe_starts_from_the_fine_tuned_parent(tmp_path, tiny_results, tiny_artifact):
    onnx_variant = read_results(tiny_results)["variants"][1]
    assert unpruned_parent(onnx_variant) == tiny_artifact.absolute()
    recovered = shutil.copytree(tiny_artifact, tmp_path / "recovered")  # stands for a fine-tune after pruning
    pruned_then_tuned = {"path": "x", "lineage": [*onnx_variant["lineage"][:-1], {"stage": "prune", "path": "/p"},
                                                  {"stage": "finetune", "path": str(recovered)}]}
    assert unpruned_parent(pruned_then_tuned) == tiny_artifact  # the finetune step before the pruning
    with pytest.raises(BertcError, match="no unpruned fine-tuned PyTorch artifact"):
        unpruned_parent({"path": "x", "lineage": [{"stage": "prune", "path": str(tiny_artifact)}]})


def test_cli_bench_prints_a_table_and_writes_results(tmp_path, tiny_artifact, tiny_data):
    out = tmp_path / "r.json"
    args = ["bench", str(tiny_artifact), "--data", str(tiny_data), "--out", str(out), "--batch-sizes", "1",
            "--runs", "3", "--rounds", "3", "--warmup", "1", "--no-memory"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "variants at batch 1, real lengths" in result.output and tiny_artifact.name in result.output
    assert read_results(out)["variants"][0]["latency"][0]["runs"] == 3
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_bench_bad_option_exits_2(tmp_path, tiny_artifact, tiny_data):
    result = CliRunner().invoke(app, ["bench", str(tiny_artifact), "--data", str(tiny_data), "--out",
                                      str(tmp_path / "r.json"), "--seq-len", "short"])
    assert result.exit_code == 2
    assert "--seq-len" in result.output and "Traceback" not in result.output
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    (copy / "bertc.json").unlink()
    (copy / "config.json").unlink()  # without either, it is no artifact and no transformers classifier
    result = CliRunner().invoke(app, ["bench", str(copy), "--data", str(tiny_data), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 2 and "not a bertc artifact" in result.output


def test_torch_dynamic_int8_variants_are_timed_with_pytorch(tmp_path, tiny_artifact, tiny_data):
    int8 = quantize(tiny_artifact, QuantizeConfig(method=TorchDynamicConfig(), eval_samples=60), tmp_path / "int8")
    config = quick_bench_config(tiny_data, batch_sizes=(2,), seq_lens=("real",))
    results = bench([tiny_artifact, int8], config, tmp_path / "r.json")
    variant = results["variants"][1]
    assert (variant["kind"], variant["backend"], variant["variant"]) == (
        "pytorch-quantized", "pytorch-eager", "int8-torch-dynamic")
    assert variant["latency"][0]["runs"] == 6 and variant["accuracy"] is not None


def test_standard_recipe_adds_ort_int8_of_the_fine_tuned_parent(tmp_path, tiny_onnx, tiny_data):
    config = quick_bench_config(tiny_data, batch_sizes=(1,), seq_lens=("real",), standard_recipe=True)
    results = bench([tiny_onnx], config, tmp_path / "r.json")
    names = [v["name"] for v in results["variants"]]
    assert names == [tiny_onnx.name, "standard: pytorch eager", "standard: ort int8"]
    eager, int8 = results["variants"][1:]
    assert eager["standard_recipe"] and int8["standard_recipe"]
    assert eager["kind"] == "pytorch" and int8["variant"] == "int8-dynamic"
    assert not Path(int8["path"]).exists()  # temporary, as its note says


def test_cli_bench_says_when_threads_override_omp_num_threads(tmp_path, tiny_artifact, tiny_data, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["bench", str(tiny_artifact), "--data", str(tiny_data), "--out", str(out),
                                      "--threads", "1", "--batch-sizes", "1", "--runs", "2", "--rounds", "1",
                                      "--warmup", "0", "--no-memory", "--no-accuracy"])
    assert result.exit_code == 0, result.output
    warning = "warning: --threads 1 overrides OMP_NUM_THREADS=2: every variant runs with 1 thread\n"
    assert result.output.count(warning) == 1
    env = read_results(out)["environment"]
    assert (env["threads"], env["threads_from"], env["omp_num_threads"]) == (1, "--threads", "2")


@pytest.mark.parametrize("where", ["inside-a-file", "unwritable-directory"])
def test_cli_bench_refuses_an_unwritable_out_before_loading_anything(where, tmp_path, tiny_artifact, tiny_data,
                                                                     monkeypatch):
    def no_work(*_args, **_kwargs):
        raise AssertionError("bench started work before checking --out")

    monkeypatch.setattr("bertc.bench.bench.describe_variants", no_work)
    (tmp_path / "notes.txt").write_text("keep")
    out = tmp_path / "notes.txt" / "r.json"
    if where == "unwritable-directory":
        (tmp_path / "locked").mkdir()
        deny_writes_in(monkeypatch, tmp_path / "locked")
        out = tmp_path / "locked" / "r.json"
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(app, ["bench", str(tiny_artifact), "--data", str(tiny_data), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"bertc: error: --out {out}")
    assert ("which is a file" if where == "inside-a-file" else "cannot write in") in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before
    assert not os.path.exists(out)
