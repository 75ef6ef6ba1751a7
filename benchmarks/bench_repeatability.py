"""Is `bertc bench` repeatable, and does its timing harness cost anything? Fine-tuned MiniLM-L6 on real SST-2.

1. Repeatability: the same bench (PyTorch eager fp32 and bertc's fused fp32 ONNX export of the model, real
   test.tsv sentence lengths) run twice in a row, each run loading the models afresh. Quality bar: for every
   variant, the batch-1 medians of the two runs differ by less than 10% (|a - b| / mean(a, b)).
2. Harness overhead: the fused ONNX model at batch 1, timed by bertc's harness (``bertc.bench.latency.measure``)
   and by a bare ``session.run`` loop over the same session and the same inputs, in alternating blocks
   (bare, harness, harness, bare, ...). Quality bar: the harness's reported mean latency, and its own wall time
   per call, are within 5% of the bare loop's time per call (median of the per-block ratios).

Accuracy and memory are not measured here (they do not affect timing); `bertc bench` tests cover them.

    python benchmarks/bench_repeatability.py                   # full run, ~5 min on an idle 2-core box (estimate)
    python benchmarks/bench_repeatability.py --quick           # smoke test (fewer calls, about 2 minutes)
    python benchmarks/bench_repeatability.py --onnx DIR        # reuse an existing fused ONNX export
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bertc.artifact import load_tokenizer, read_manifest  # noqa: E402
from bertc.bench.bench import bench  # noqa: E402
from bertc.bench.config import BenchConfig  # noqa: E402
from bertc.bench.latency import Runner, Setting, make_batches, measure, open_backend  # noqa: E402
from bertc.data.config import Columns  # noqa: E402
from bertc.data.prepare import read_eval_data  # noqa: E402
from bertc.environment import environment, usable_cores  # noqa: E402
from bertc.export.config import ExportConfig  # noqa: E402
from bertc.export.onnx import export  # noqa: E402

SST2 = REPO.parent / "shared" / "data" / "sst2"
MODEL = REPO.parent / "runs" / "minilm-sst2-16k"
DISAGREEMENT_BAR, OVERHEAD_BAR = 0.10, 0.05


def repeatability(artifacts: list[Path], config: BenchConfig, work: Path) -> dict:
    """Two identical bench runs; relative difference of each variant's median per setting."""
    runs = [bench(artifacts, config, work / f"run{i}.json") for i in (1, 2)]
    rows = []
    for first, second in zip(runs[0]["variants"], runs[1]["variants"]):
        for a, b in zip(first["latency"], second["latency"]):
            rows.append({"variant": first["name"], "batch_size": a["batch_size"], "seq_len": a["seq_len"],
                         "p50_ms_run1": a["p50_ms"], "p50_ms_run2": b["p50_ms"],
                         "disagreement": abs(a["p50_ms"] - b["p50_ms"]) / ((a["p50_ms"] + b["p50_ms"]) / 2),
                         "p50_spread_run1": a["p50_spread"], "p50_spread_run2": b["p50_spread"]})
    batch1 = [r["disagreement"] for r in rows if r["batch_size"] == 1]
    return {"rows": rows, "batch1_max_disagreement": max(batch1),
            "passes": max(batch1) < DISAGREEMENT_BAR, "results_files": [str(work / "run1.json")]}


def harness_overhead(onnx_dir: Path, texts: list[str], threads: int, blocks: int, calls: int) -> dict:
    """bertc's harness against a bare session.run loop on the same session and inputs (batch 1, real lengths)."""
    manifest = read_manifest(onnx_dir)
    backend = open_backend(onnx_dir, manifest, "cpu", threads)
    batches = make_batches(load_tokenizer(onnx_dir), texts, None, Setting(1, "real"),
                           manifest["task"].get("max_length", 128))
    feeds = [backend.feeds(b) for b in batches]
    runner = Runner(backend, batches)
    session, outputs = backend.session, backend.outputs
    for f in feeds[:50]:  # warm-up
        session.run(outputs, f)
    bare, reported, wall = [], [], []
    for block in range(blocks):
        for which in (("bare", "harness") if block % 2 == 0 else ("harness", "bare")):
            if which == "bare":  # the same calls as the harness makes: one re-warm call, then `calls` timed
                start = time.perf_counter()
                for i in range(calls + 1):
                    session.run(outputs, feeds[i % len(feeds)])
                bare.append((time.perf_counter() - start) * 1000 / (calls + 1))
            else:
                runner.position = 0
                start = time.perf_counter()
                times = measure({"onnx": runner}, warmup=0, runs=calls, rounds=1)["onnx"][0]
                wall.append((time.perf_counter() - start) * 1000 / (calls + 1))
                reported.append(statistics.fmean(times))

    def ratio(values):
        ratios = [v / b for v, b in zip(values, bare)]
        return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}

    reported_ratio, wall_ratio = ratio(reported), ratio(wall)
    return {"blocks": blocks, "calls_per_block": calls, "bare_ms_per_call": bare, "harness_reported_mean_ms": reported,
            "harness_wall_ms_per_call": wall, "reported_over_bare": reported_ratio, "wall_over_bare": wall_ratio,
            "passes": abs(reported_ratio["median"] - 1) < OVERHEAD_BAR and abs(wall_ratio["median"] - 1) < OVERHEAD_BAR}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls, batch 1 only: a smoke test")
    parser.add_argument("--model", type=Path, default=MODEL, help="fine-tuned PyTorch artifact (MiniLM-L6 SST-2)")
    parser.add_argument("--onnx", type=Path, help="its fused ONNX export (default: export it now into a temp dir)")
    parser.add_argument("--data", default=str(SST2 / "test.tsv"), help="labelled sentences to time on")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or REPO / "benchmarks" / "results" / f"bench_repeatability{'_quick' if args.quick else ''}.json"
    dataset, _ = read_eval_data(args.data, Columns(), split="test")
    with tempfile.TemporaryDirectory(prefix="bertc-repeat-") as tmp:
        work = Path(tmp)
        onnx_dir = args.onnx
        if onnx_dir is None:
            started = time.perf_counter()
            onnx_dir = export(args.model, ExportConfig(data=args.data, verify_samples=200 if args.quick else 1000),
                              work / "onnx")
            print(f"exported {args.model} to fused ONNX in {time.perf_counter() - started:.0f} s", flush=True)
        config = BenchConfig(data=args.data, threads=args.threads, batch_sizes=(1,) if args.quick else (1, 8),
                             warmup=5 if args.quick else 10, runs=40 if args.quick else 200,
                             rounds=4 if args.quick else 10, accuracy=False, memory=False)
        repeat = repeatability([args.model, onnx_dir], config, work)
        overhead = harness_overhead(onnx_dir, dataset.texts, args.threads, blocks=4 if args.quick else 10,
                                    calls=50 if args.quick else 300)
        first_run = json.loads((work / "run1.json").read_text())
    result = {"benchmark": "bench_repeatability", "quick": args.quick, "model": str(args.model),
              "onnx": str(args.onnx or "exported for this run"), "data": args.data, "threads": args.threads,
              "config": first_run["config"], "repeatability": repeat, "overhead": overhead,
              "first_bench_results": first_run, "environment": environment(args.threads)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\nrepeatability (two identical bench runs, p50 ms):")
    for row in repeat["rows"]:
        print(f"  {row['variant']:<28} batch {row['batch_size']:<3} {row['p50_ms_run1']:8.3f} {row['p50_ms_run2']:8.3f}"
              f"  differ by {100 * row['disagreement']:.1f}%")
    print(f"  batch-1 medians agree within {100 * repeat['batch1_max_disagreement']:.1f}% "
          f"(bar < {100 * DISAGREEMENT_BAR:.0f}%): {'PASS' if repeat['passes'] else 'FAIL'}")
    print("harness overhead, fused ONNX batch 1 (ratio to a bare session.run loop, median of blocks [range]):")
    for key, label in (("reported_over_bare", "reported mean latency"), ("wall_over_bare", "harness wall time")):
        r = overhead[key]
        print(f"  {label:<22} {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]")
    print(f"  bare loop {statistics.median(overhead['bare_ms_per_call']):.3f} ms/call; bar |ratio - 1| < "
          f"{100 * OVERHEAD_BAR:.0f}%: {'PASS' if overhead['passes'] else 'FAIL'}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
