"""`bertc optimize --candidates` on every family: two candidates, built, exported, quantized, benched, reported."""

from __future__ import annotations

import json

import pytest

from bertc.optimize import runtimes
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.optimize import optimize


@pytest.mark.parametrize("candidates", [("base:int8-dynamic", "heads2+ffn50:int8-dynamic")])
def test_optimize_builds_and_benches_two_candidates(family, family_artifact, tiny_data, tmp_path, monkeypatch,
                                                    candidates):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    config = OptimizeConfig(train=str(tiny_data), start_from=str(family_artifact), preset="quick",
                            candidates=candidates, lr=2e-3, batch_size=16, max_length=32, recover_samples=64,
                            importance_samples=32, bench_runs=5, max_accuracy_drop=50.0, exhaustive=True)
    summary = optimize(config, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "optimize.json").read_text())
    assert state["finished"]
    assert [c["name"] for c in state["candidates"]] == ["base-int8-dynamic", "heads2+ffn50-int8-dynamic"]
    rows = {row["name"]: row for row in summary["rows"]}
    assert {"base-int8-dynamic", "heads2+ffn50-int8-dynamic"} <= set(rows)
    assert all("test_accuracy" in row and row["p50_ms"] > 0 for row in rows.values()), rows
    assert summary["winner"] in rows
