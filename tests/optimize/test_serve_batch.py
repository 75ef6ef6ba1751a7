"""`bertc optimize --serve-batch N`: both runtimes built and benched at batch 1 and N, the winner chosen at N, and
a `best/serve.py` that runs an OpenVINO winner with only openvino and transformers installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from bertc.artifact import is_artifact, read_manifest, write_manifest
from bertc.bench.report import within_budget
from bertc.cli import app
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, NncfInt8Config, QuantizeConfig
from bertc.inference.evaluation import predict
from bertc.optimize import finish, runtimes
from bertc.optimize.config import OptimizeConfig, SelectConfig
from bertc.optimize.optimize import optimize
from bertc.optimize.runtimes import choose_at, measured_runtimes, runtime_of
from bertc.optimize.search import Candidate, Step
from bertc.optimize.stages import measurement_configs, openvino_stages
from tests.conftest import assert_one_line_error, tiny_tokenizer
from tests.inference.test_onnx import counting_graph
from tests.optimize.test_optimize import TEXTS, tiny_config
from tests.optimize.test_stages import PLAN

# ---------------------------------------------------------------------------------------------- options


def test_serve_batch_must_be_a_positive_whole_number():
    assert OptimizeConfig(train="t.tsv").serve_batch == 1 and SelectConfig().serve_batch == 1
    with pytest.raises(BertcError, match=r"^--serve-batch must be a whole number of at least 1, got 0$"):
        OptimizeConfig(train="t.tsv", serve_batch=0)
    with pytest.raises(BertcError, match=r"^--serve-batch must be at least 1, got -2$"):
        SelectConfig(serve_batch=-2)


def test_cli_serve_batch_zero_exits_2_in_one_line_and_writes_nothing(tmp_path, tiny_bert_dir, tiny_data):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", "--train", str(tiny_data), "--model", str(tiny_bert_dir),
                                      "--out", str(out), "--serve-batch", "0"])
    assert_one_line_error(result, "--serve-batch must be a whole number of at least 1, got 0")
    assert not out.exists()


def test_the_bench_times_batch_one_and_the_serve_batch_and_the_choice_knows_it():
    bench, select = measurement_configs(OptimizeConfig(train="/d", preset="quick", serve_batch=16), PLAN)
    assert bench.batch_sizes == (1, 16) and select.serve_batch == 16
    full, _ = measurement_configs(OptimizeConfig(train="/d", serve_batch=4), PLAN)
    assert full.batch_sizes == (1, 4, 8)  # the preset's sizes stay


# ---------------------------------------------------------------------------------------------- runtimes


def test_without_openvino_only_onnx_runtime_is_measured_and_a_note_says_why(monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    missing = measured_runtimes("cpu")
    assert not missing.openvino and not missing.bf16 and len(missing.notes) == 1
    assert "OpenVINO was not measured" in missing.notes[0] and "pip install 'bertc[openvino]'" in missing.notes[0]
    cuda = measured_runtimes("cuda")
    assert not cuda.openvino and "runs on the CPU" in cuda.notes[0]


def test_bf16_is_measured_only_where_the_export_says_the_cpu_runs_it(monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: True)
    monkeypatch.setattr(runtimes, "bf16_problem", lambda: "bf16 inference needs a CPU with bf16 support")
    without = measured_runtimes("cpu")
    assert without.openvino and not without.bf16
    assert without.notes == ("note: OpenVINO bf16 was not measured: bf16 inference needs a CPU with bf16 support",)
    monkeypatch.setattr(runtimes, "bf16_problem", lambda: None)
    assert measured_runtimes("cpu") == runtimes.Runtimes(openvino=True, bf16=True)


def test_openvino_stages_of_an_int8_and_an_fp32_candidate():
    config = OptimizeConfig(train="/d", preset="quick", seed=3)
    layers = Candidate((Step("layers", 3),), "int8-dynamic")
    fp32, int8, bf16 = openvino_stages(config, PLAN, layers, "layers3", bf16=True, remaining_points=0.4)
    assert [fp32.name, int8.name, bf16.name] == ["layers3-openvino-fp32", "layers3-openvino-int8",
                                                 "layers3-openvino-bf16"]
    assert (fp32.kind, fp32.input, bf16.kind, bf16.input, int8.kind, int8.input) == \
        ("export", "layers3", "export", "layers3", "quantize", "layers3-openvino-fp32")
    assert fp32.config == ExportConfig(openvino=True, data="/d/dev.tsv", split="validation", verify_samples=400)
    assert bf16.config.inference_precision == "bf16" and bf16.config.openvino
    assert int8.config == QuantizeConfig(method=NncfInt8Config(calibration_data="/d/train.tsv", seed=3),
                                         eval_data="/d/dev.tsv", split="validation", eval_samples=400,
                                         max_accuracy_drop=0.4)
    plain = openvino_stages(config, PLAN, Candidate((), "fp32"), "finetune", bf16=False)
    assert [s.name for s in plain] == ["base-openvino-fp32"]


# ---------------------------------------------------------------------------------------------- the choice at N

def results(variants: list[tuple]) -> dict:
    """Bench results at batch 1 and 8: (name, backend, accuracy, p50 at 1, p50 at 8) per variant."""
    def row(batch, p50):
        return {"batch_size": batch, "seq_len": "real", "p50_ms": p50, "round_p50_ms": [p50] * 3,
                "throughput": batch * 1000 / p50}

    return {"baseline": variants[0][0], "settings": [{"batch_size": b, "seq_len": "real"} for b in (1, 8)],
            "variants": [{"name": name, "path": f"/runs/{name}", "backend": backend, "accuracy": accuracy,
                          "latency": [row(1, one), row(8, eight)]}
                         for name, backend, accuracy, one, eight in variants]}


BENCH = results([("finetune", "pytorch-eager", 0.90, 20.0, 100.0),
                 ("base-int8-dynamic", "onnxruntime", 0.897, 4.0, 30.0),  # fastest at batch 1
                 ("base-openvino-int8", "openvino", 0.896, 5.0, 16.0),  # fastest at batch 8 within the budget
                 ("layers1-openvino-int8", "openvino", 0.85, 2.0, 8.0)])  # fastest, but 5 points over the budget


def test_the_winner_is_the_fastest_at_the_serve_batch_within_the_budget():
    at_one = choose_at(json.loads(json.dumps(BENCH)), 1.0)
    assert at_one["winner"]["name"] == "base-int8-dynamic" and at_one["winner"]["runtime"] == "ONNX Runtime"
    at_eight = choose_at(json.loads(json.dumps(BENCH)), 1.0, serve_batch=8)
    winner = at_eight["winner"]
    assert winner["name"] == "base-openvino-int8" and not at_eight["shipped_baseline"]
    assert winner["runtime"] == "OpenVINO" and winner["serve_p50_ms"] == 16.0 and winner["serve_speedup"] == 6.25
    assert winner["serve_throughput"] == pytest.approx(500.0) and winner["p50_ms"] == 5.0
    assert at_eight["text"].startswith("Winner at batch 8: base-openvino-int8 (OpenVINO), 16 ms p50 per batch "
                                       "(500 rows/s) against 100 ms for the fine-tuned baseline (6.25x faster")
    assert {r["name"]: r["runtime"] for r in at_eight["rows"]} == {
        "finetune": "PyTorch", "base-int8-dynamic": "ONNX Runtime", "base-openvino-int8": "OpenVINO",
        "layers1-openvino-int8": "OpenVINO"}
    # a wider budget lets the fastest at batch 8 win, whatever its batch-1 latency
    assert choose_at(json.loads(json.dumps(BENCH)), 6.0, serve_batch=8)["winner"]["name"] == "layers1-openvino-int8"


def test_a_latency_budget_at_batch_one_still_picks_the_most_accurate_that_meets_it():
    bench = json.loads(json.dumps(BENCH))
    assert choose_at(bench, 1.0, latency_budget_ms=4.5, serve_batch=8)["winner"]["name"] == "base-int8-dynamic"
    missed = choose_at(json.loads(json.dumps(BENCH)), 1.0, latency_budget_ms=1.0, serve_batch=8)
    assert missed["winner"]["name"] == "base-openvino-int8" and "meets the 1 ms latency budget" in missed["text"]


def test_nothing_faster_at_the_serve_batch_ships_the_baseline():
    bench = results([("finetune", "pytorch-eager", 0.90, 20.0, 10.0), ("ort", "onnxruntime", 0.90, 4.0, 12.0)])
    choice = choose_at(bench, 1.0, serve_batch=8)
    assert choice["shipped_baseline"] and choice["winner"]["name"] == "finetune"
    assert choice["text"].startswith("Nothing beats the fine-tuned baseline finetune (10 ms p50 at batch 8)")


def test_runtime_of_a_variant_from_its_backend_or_kind():
    assert runtime_of({"backend": "openvino"}) == "OpenVINO" and runtime_of({"kind": "onnx"}) == "ONNX Runtime"
    assert runtime_of({"kind": "pytorch"}) == "PyTorch"


def test_the_summary_table_lists_every_runtime_and_the_serve_batch_figures():
    choice = choose_at(json.loads(json.dumps(BENCH)), 1.0, serve_batch=8)
    summary = {"winner": choice["winner"]["name"], "rows": choice["rows"], "searched": [
        {"name": "layers1-int8-dynamic", "status": "built", "openvino": [
            {"name": "layers1-openvino-bf16", "status": "failed", "reason": "does not match PyTorch"}]}],
        "serve_batch": 8, "notes": ["note: OpenVINO bf16 was not measured: no bf16 here"], "test_data": None,
        "text": choice["text"], "report": "/r.html", "recipe": "/recipe.toml"}
    header, lines = finish.summary_rows(summary)
    assert header[:2] == ["variant", "runtime"] and header[8:11] == ["p50 ms @8", "rows/s @8", "vs fine-tuned @8"]
    by_name = {line[0]: line for line in lines}
    assert by_name["base-openvino-int8"][1] == "OpenVINO" and by_name["base-openvino-int8"][-1] == "shipped"
    assert by_name["base-openvino-int8"][8:11] == ["16", "500", "6.25x"]
    assert by_name["base-int8-dynamic"][1] == "ONNX Runtime"
    text = finish.summary_markdown(summary, SelectConfig())
    assert "- layers1-openvino-bf16: failed (does not match PyTorch)" in text
    assert "note: OpenVINO bf16 was not measured: no bf16 here" in text and "p50 per batch of 8" in text
    assert finish.summary_rows({**summary, "serve_batch": 1})[0][6:9] == ["p50 ms", "vs fine-tuned", "vs standard"]


# ---------------------------------------------------------------------------------------------- serve.py

def only_packages(directory: Path, *roots: str) -> Path:
    """A directory holding (as links) only ``roots`` and what they require: an environment where nothing else,
    torch, onnxruntime or bertc included, is installed."""
    seen, todo = set(), list(roots)
    directory.mkdir()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # an optional or other-platform requirement
            continue
        todo += [Requirement(text).name for text in dist.requires or []
                 if Requirement(text).marker is None or Requirement(text).marker.evaluate({"extra": ""})]
        for top in {Path(str(file)).parts[0] for file in dist.files or []} - {".."}:
            link, target = directory / top, Path(dist.locate_file(top))
            if not link.exists() and target.exists() and not top.endswith(".pth"):
                link.symlink_to(target)
    assert "torch" not in seen and "onnxruntime" not in seen and "bertc" not in seen
    return directory


@pytest.fixture
def openvino_winner(tmp_path):
    """An OpenVINO artifact whose logits are [token count, token id sum]: its label is always the second one."""
    ov = pytest.importorskip("openvino")
    src = tmp_path / "stages" / "base-openvino-int8"
    tokenizer, _ = tiny_tokenizer(src)
    tokenizer.save_pretrained(src)
    graph = tmp_path / "counting.onnx"
    graph.write_bytes(counting_graph().SerializeToString())
    ov.save_model(ov.convert_model(str(graph)), str(src / "model.xml"), compress_to_fp16=False)
    write_manifest(src, stage="quantize", config={}, parent=None, model={
        "kind": "openvino", "variant": "int8-nncf", "file": "model.xml", "inference_precision": "f32"},
        task={"labels": ["short", "long"], "max_length": 16})
    return src


def test_serve_py_of_an_openvino_winner_needs_only_openvino_and_transformers(tmp_path, openvino_winner):
    best = finish.ship(openvino_winner, tmp_path / "best", "cpu", "Winner at batch 8: base-openvino-int8.")
    assert {"model.xml", "model.bin", "labels.json", "serve.py", "README.md"} <= {p.name for p in best.iterdir()}
    assert "it needs only openvino and transformers" in (best / "README.md").read_text()
    script = (best / "serve.py").read_text()
    assert '"INFERENCE_PRECISION_HINT": "f32"' in script and "max_length=16" in script
    site = only_packages(tmp_path / "site", "openvino", "transformers")
    check = ("import sys, runpy\nsys.argv = [sys.argv[1], *sys.argv[2:]]\nrunpy.run_path(sys.argv[0], "
             "run_name='__main__')\nloaded = [m for m in ('bertc', 'onnxruntime', 'torch') if m in sys.modules]\n"
             "assert not loaded, loaded\n")
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", check, str(best / "serve.py"), "good", "the movie"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["long\tgood", "long\tthe movie"]
    # and torch really is out of reach there, so the check above means something
    blocked = subprocess.run([sys.executable, "-S", "-c", "import torch"], capture_output=True, env=env, cwd=tmp_path)
    assert blocked.returncode != 0


def test_the_bf16_precision_of_the_artifact_is_the_one_serve_py_asks_for():
    script = finish.serving_script("openvino", "cpu", 64, "bf16", "model.xml")
    compile(script, "serve.py", "exec")
    assert '"INFERENCE_PRECISION_HINT": "bf16"' in script and "import onnxruntime" not in script
    assert "from bertc" not in script and "import bertc" not in script


# ---------------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_artifact, tiny_data):
    """optimize --serve-batch 4 with OpenVINO installed: the standard recipe in both runtimes."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    out = tmp_path_factory.mktemp("serve-batch") / "run"
    config = tiny_config(tiny_data, start_from=str(tiny_artifact), candidates=("base:int8-dynamic",),
                         serve_batch=4)
    return out, optimize(config, out)


def test_both_runtimes_are_built_benched_at_one_and_n_and_reported(served):
    out, summary = served
    state = json.loads((out / "optimize.json").read_text())
    openvino = ["base-openvino-fp32", "base-openvino-int8"] + (["base-openvino-bf16"] if runtimes.bf16_problem()
                                                               is None else [])
    assert [n for n in state["nodes"] if n != "from"] == ["base-onnx", "base-int8-dynamic", *openvino]
    assert all(is_artifact(out / "stages" / name) for name in openvino)
    assert read_manifest(out / "stages" / "base-openvino-int8")["model"]["variant"] == "int8-nncf"
    record = state["candidates"][0]
    assert [entry["name"] for entry in record["openvino"]] == openvino[1:]
    bench = json.loads((out / "bench.json").read_text())
    assert [s["batch_size"] for s in bench["settings"]] == [1, 4]
    backends = {v["name"]: v["backend"] for v in bench["variants"]}
    assert backends["base-int8-dynamic"] == "onnxruntime"
    assert all(backends[name] == "openvino" for name in openvino[1:])
    assert {row["runtime"] for row in summary["rows"]} == {"PyTorch", "ONNX Runtime", "OpenVINO"}
    table = (out / "summary.md").read_text()
    assert "| variant | runtime |" in table and "p50 ms @4" in table and "| base-openvino-int8 | OpenVINO |" in table
    assert "serve_batch = 4" in (out / "recipe.toml").read_text()


def test_the_winner_is_the_fastest_at_batch_n_in_the_bench_results(served):
    out, summary = served
    bench = json.loads((out / "bench.json").read_text())
    p50 = {v["name"]: next(r["p50_ms"] for r in v["latency"] if r["batch_size"] == 4) for v in bench["variants"]}
    eligible = [v["name"] for v in bench["variants"] if v["name"] != bench["baseline"] and within_budget(bench, v, 5.0)]
    fastest = min(eligible, key=p50.get)
    expected = fastest if p50[fastest] < p50[bench["baseline"]] else bench["baseline"]
    assert summary["winner"] == expected
    assert summary["shipped_baseline"] == (expected == bench["baseline"])


def test_best_serve_py_serves_the_winner(served):
    out, summary = served
    best = out / "best"
    kind = read_manifest(best)["model"].get("kind", "pytorch")
    script = (best / "serve.py").read_text()
    assert ("import openvino as ov" in script) == (kind == "openvino")
    done = subprocess.run([sys.executable, str(best / "serve.py"), *TEXTS], capture_output=True, text=True,
                          timeout=300, check=True)
    labels = [line.split("\t")[0] for line in done.stdout.strip().splitlines()]
    assert labels == [str(row["label"]) for row in predict(best, TEXTS)]
