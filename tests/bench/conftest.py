"""Fixtures for bench and report tests: ONNX exports of the tiny fine-tuned model and a quick results file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bertc.bench.bench import bench
from bertc.bench.config import BenchConfig
from bertc.export.config import ExportConfig
from bertc.export.onnx import export


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_artifact) -> Path:
    """bertc's fused fp32 ONNX export of the tiny fine-tuned model."""
    return export(tiny_artifact, ExportConfig(verify_samples=60), tmp_path_factory.mktemp("onnx") / "tiny-onnx")


def quick_bench_config(data, **overrides):
    options = dict(data=str(data), batch_sizes=(1, 4), seq_lens=("real", 16), warmup=2, runs=6, rounds=3,
                   memory=False)
    options.update(overrides)
    return BenchConfig(**options)


def deny_writes_in(monkeypatch, directory):
    """Make ``directory`` unwritable the way the writability check finds out (permission bits do not stop root)."""
    real = tempfile.TemporaryFile

    def temporary_file(*args, **kwargs):
        if str(kwargs.get("dir")) == str(directory):
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory, tiny_artifact, tiny_onnx, tiny_data) -> Path:
    """A results file of the tiny PyTorch artifact (the baseline) and its ONNX export, quick settings."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    bench([tiny_artifact, tiny_onnx], quick_bench_config(tiny_data), out)
    return out
