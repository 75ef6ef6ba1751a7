"""bertc bench and report with OpenVINO artifacts: timed beside ONNX Runtime, threads and precision recorded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bertc.artifact import load_tokenizer, read_manifest
from bertc.bench.bench import bench
from bertc.bench.latency import OpenVinoBackend, Setting, make_batches, open_backend
from bertc.bench.memory import peak_memory
from bertc.bench.report import console_tables, report
from bertc.bench.results import read_results
from bertc.cli import app
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.inference.evaluation import evaluate
from tests.bench.conftest import quick_bench_config

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def tiny_openvino(tmp_path_factory, tiny_artifact):
    return export(tiny_artifact, ExportConfig(openvino=True, verify_samples=30),
                  tmp_path_factory.mktemp("openvino") / "tiny-openvino")


@pytest.fixture(scope="module")
def results_file(tmp_path_factory, tiny_onnx, tiny_openvino, tiny_data):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    bench([tiny_onnx, tiny_openvino], quick_bench_config(tiny_data, batch_sizes=(1, 3), seq_lens=("real", 12),
                                                         threads=1), out)
    return out


def test_openvino_variant_is_timed_beside_onnx_runtime(results_file, tiny_openvino):
    results = read_results(results_file)
    onnx_variant, openvino_variant = results["variants"]
    assert (onnx_variant["backend"], openvino_variant["backend"]) == ("onnxruntime", "openvino")
    assert openvino_variant["kind"] == "openvino" and openvino_variant["variant"] == "fp32"
    assert [(row["batch_size"], row["seq_len"]) for row in openvino_variant["latency"]] == [
        (row["batch_size"], row["seq_len"]) for row in onnx_variant["latency"]] == [(1, "real"), (3, "real"),
                                                                                    (1, 12), (3, 12)]
    for row in openvino_variant["latency"]:
        assert row["runs"] == 6 and len(row["round_p50_ms"]) == 3
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["throughput"] > 0
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
    assert all(row["padded_length_mean"] == 12 for row in openvino_variant["latency"] if row["seq_len"] == 12)
    assert openvino_variant["size_bytes"] == sum((tiny_openvino / name).stat().st_size
                                                 for name in ("model.xml", "model.bin"))
    assert results["environment"]["openvino_version"] == ov.__version__


def test_openvino_runs_with_the_bench_threads_one_stream_and_its_recorded_precision(results_file):
    results = read_results(results_file)
    properties = results["variants"][1]["openvino"]
    assert results["environment"]["threads"] == 1
    assert properties["INFERENCE_NUM_THREADS"] == 1 and properties["NUM_STREAMS"] == 1
    assert properties["INFERENCE_PRECISION_HINT"] == "f32" and properties["PERFORMANCE_HINT"] == "LATENCY"
    assert properties["ENABLE_CPU_PINNING"] is False  # as ONNX Runtime with an explicit thread count


def test_openvino_accuracy_matches_bertc_evaluate(results_file, tiny_openvino, tiny_data):
    onnx_variant, openvino_variant = read_results(results_file)["variants"]
    expected = evaluate(tiny_openvino, str(tiny_data), split="test")
    assert openvino_variant["accuracy"] == pytest.approx(expected["accuracy"])
    assert openvino_variant["samples"] == expected["samples"] == 60
    assert openvino_variant["accuracy"] == pytest.approx(onnx_variant["accuracy"], abs=1 / 60)


def test_backend_runs_the_same_batches_as_the_predictor(tiny_openvino, tiny_onnx, tiny_data):
    manifest = read_manifest(tiny_openvino)
    backend = open_backend(tiny_openvino, manifest, "cpu", threads=2)
    assert isinstance(backend, OpenVinoBackend) and backend.properties["INFERENCE_NUM_THREADS"] == 2
    onnx = open_backend(tiny_onnx, read_manifest(tiny_onnx), "cpu", threads=1)
    (batch,) = make_batches(load_tokenizer(tiny_openvino), ["the movie was good", "bad"], None, Setting(2, "real"),
                            32, pool=1)
    backend.run(backend.prepare(batch))
    logits = backend.request.get_output_tensor(0).data
    expected = onnx.session.run(["logits"], onnx.prepare(batch))[0]
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert backend.timed(backend.prepare(batch)) > 0


def test_report_shows_the_openvino_backend(tmp_path, results_file):
    terminal = Console(record=True, width=400, file=io.StringIO())
    for table in console_tables(read_results(results_file)):
        terminal.print(table)
    assert "openvino fp32" in terminal.export_text()
    out = report([results_file], tmp_path / "report")
    assert "openvino fp32" in (out / "report.md").read_text()


def test_memory_of_an_openvino_variant_is_measured_in_a_child(tiny_openvino, tiny_data):
    (batch,) = make_batches(load_tokenizer(tiny_openvino), ["the movie was good", "bad"], None, Setting(2, 8), 32,
                            pool=1)
    memory = peak_memory(tiny_openvino, "cpu", 1, batch, runs=2)
    assert memory["batch_shape"] == [2, 8] and memory["peak_rss_bytes"] > memory["model_rss_bytes"] > 0


def test_openvino_on_cuda_is_refused_before_loading(tmp_path, tiny_openvino, tiny_data):
    with pytest.raises(BertcError, match="OpenVINO models run on the CPU"):
        bench([tiny_openvino], quick_bench_config(tiny_data, device="cuda"), tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_cli_bench_accepts_openvino_artifacts(tmp_path, tiny_openvino, tiny_data):
    result = CliRunner().invoke(app, ["bench", str(tiny_openvino), "--data", str(tiny_data), "--out",
                                      str(tmp_path / "r.json"), "--batch-sizes", "1", "--runs", "2", "--rounds", "1",
                                      "--warmup", "1", "--no-memory", "--no-accuracy"])
    assert result.exit_code == 0, result.output
    assert read_results(tmp_path / "r.json")["variants"][0]["backend"] == "openvino"
