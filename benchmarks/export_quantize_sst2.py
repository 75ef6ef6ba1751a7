"""Export and quantization on SST-2: speed and accuracy of fused ONNX fp32, dynamic int8 and static int8 against
PyTorch fp32 eager, measured side by side.

    python benchmarks/export_quantize_sst2.py --parent runs/minilm-sst2-16k [--pruned runs/minilm-heads8]
    python benchmarks/export_quantize_sst2.py --parent ... --quick     # a smoke test: a few sentences, 2 rounds

For the parent (and the pruned model when given) the script exports a fused fp32 ONNX model and quantizes it
(ORT dynamic int8, ORT static int8 with MinMax calibration, PyTorch dynamic int8) through bertc's library. It
then times batch-1 inference on real test.tsv sentences: every round runs every variant on every sentence, one
variant's block after another (each after one untimed call) in a rotating order, so drift in machine speed hits
all variants alike. All variants use the same number of threads. Times cover the model call only (inputs are
tokenized beforehand, identically for all). Interleaving runtimes is only fair when none busy-waits on the cores
the next one needs, so ONNX Runtime sessions run without spinning (these figures were measured so; ``--spin``
gives bertc's sessions, whose threads spin only while a call runs; ORT's default, spinning on after a call too,
made PyTorch up to 20x slower when interleaved with ORT on 2 cores). PyTorch keeps its OpenMP defaults: their short
spin after a block only overlaps the untimed call (OMP_WAIT_POLICY=PASSIVE, used here until 2026-11-25, made
PyTorch eager slower and flattered the ratios against it).
Accuracy and label agreement (with the PyTorch model each variant comes from) use the whole test file.
The table states each variant's speed as a ratio to PyTorch fp32 eager and to the fused fp32 ONNX model; the
JSON (``--json``) also holds the per-round ratios, the environment and the command.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bertc.artifact import load_tokenizer, read_manifest  # noqa: E402
from bertc.console import console  # noqa: E402
from bertc.data.config import Columns  # noqa: E402
from bertc.data.prepare import read_eval_data  # noqa: E402
from bertc.environment import environment, usable_cores  # noqa: E402
from bertc.export.config import ExportConfig, QuantizeConfig, StaticQuantConfig, TorchDynamicConfig  # noqa: E402
from bertc.export.onnx import export  # noqa: E402
from bertc.export.quantize import quantize  # noqa: E402
from bertc.inference.onnx import create_session  # noqa: E402
from bertc.inference.registry import load_predictor  # noqa: E402
from bertc.jsonio import write_json  # noqa: E402
from bertc.metrics import classification_report  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "sst2"


@dataclass
class Variant:
    name: str
    group: str  # "parent" or "pruned": ratios are taken within a group
    artifact: Path
    runner: object = None  # callable(features) -> logits, for timing
    times: list[float] = field(default_factory=list)  # seconds, one per (round, sentence)
    round_means: list[float] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    manifest = read_manifest(args.parent)
    task = manifest["task"]
    columns = Columns(task.get("text_column"), task.get("text_pair_column"), task.get("label_column"))
    test, _ = read_eval_data(str(args.data), columns, split="test")
    if args.quick:
        test = test.head(args.eval_samples or 100)
    elif args.eval_samples:
        test = test.head(args.eval_samples)
    order = list(range(len(test)))
    random.Random(args.seed).shuffle(order)
    sentences = [test.texts[i] for i in order[:args.sentences]]

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bertc-bench-export-"))
    started = time.time()
    variants = []
    for group, src in (("parent", args.parent), ("pruned", args.pruned)):
        if src is not None:
            variants += build_variants(group, Path(src), work / group, args)
    for v in variants:
        v.runner = make_runner(v.artifact, threads, args.spin)
    build_seconds = time.time() - started

    console.print(f"timing {len(variants)} variants on {len(sentences)} sentences x {args.rounds} rounds, "
                  f"batch 1, {threads} threads")
    inputs = {v.name: prepare_inputs(v, sentences, task) for v in variants}
    for v in variants:  # warm up
        for features in inputs[v.name][:args.warmup]:
            v.runner(features)
    for round_index in range(args.rounds):
        round_times = {v.name: [] for v in variants}
        k = round_index % len(variants)
        for v in variants[k:] + variants[:k]:
            v.runner(inputs[v.name][0])  # untimed: re-warm after the previous variant
            for i in range(len(sentences)):
                t0 = time.perf_counter()
                v.runner(inputs[v.name][i])
                round_times[v.name].append(time.perf_counter() - t0)
        for v in variants:
            v.times += round_times[v.name]
            v.round_means.append(float(np.mean(round_times[v.name])))

    score_variants(variants, test)
    results = summarize(variants)
    checks = quality_checks(results)
    print_table(console, results, checks)
    write_json(args.json, {
        "benchmark": "export_quantize_sst2", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "quick": args.quick, "threads": threads, "sentences": len(sentences), "rounds": args.rounds,
        "eval_samples": len(test), "data": test.source, "parent": str(Path(args.parent).absolute()),
        "pruned": str(Path(args.pruned).absolute()) if args.pruned else None, "build_seconds": build_seconds,
        "artifacts": str(work) if args.keep else None, "variants": results, "checks": checks,
        "spinning": args.spin, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "environment": environment(threads)})
    console.print(f"wrote {args.json}")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", required=True, help="fine-tuned bertc PyTorch artifact (e.g. MiniLM on SST-2)")
    parser.add_argument("--pruned", help="optional pruned PyTorch artifact of the same task (e.g. --heads 8)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="SST-2 directory with test.tsv")
    parser.add_argument("--sentences", type=int, default=200, help="test sentences timed per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the sentences")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=None, help="threads for every variant (default: all cores)")
    parser.add_argument("--eval-samples", type=int, default=None, help="score accuracy on the first N test rows")
    parser.add_argument("--calibration-samples", type=int, default=200, help="static int8 calibration examples")
    parser.add_argument("--keep", help="write the exported/quantized artifacts here (default: a temp dir)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "export_quantize_sst2.json"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence order")
    parser.add_argument("--spin", action="store_true", help="spin while a call runs, as bertc's sessions do")
    parser.add_argument("--quick", action="store_true", help="smoke test: 20 sentences, 2 rounds, 100 eval rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.sentences, args.rounds, args.warmup = min(args.sentences, 20), 2, 3
        args.calibration_samples = min(args.calibration_samples, 50)
        if args.json == parser.get_default("json"):
            args.json = str(REPO / "benchmarks" / "results" / "export_quantize_sst2_quick.json")
    if not (Path(args.data) / "test.tsv").is_file():
        parser.error(f"{args.data}/test.tsv not found; pass --data with the SST-2 directory")
    return args


def build_variants(group: str, src: Path, work: Path, args) -> list[Variant]:
    verify = 100 if args.quick else 1000
    label = "" if group == "parent" else "pruned "
    fp32 = export(src, ExportConfig(verify_samples=verify), work / "onnx-fp32", overwrite=True)
    config = QuantizeConfig(eval_samples=verify)
    dynamic = quantize(fp32, config, work / "onnx-int8-dynamic", overwrite=True)
    static = quantize(fp32, QuantizeConfig(method=StaticQuantConfig(calibration_samples=args.calibration_samples),
                                           eval_samples=verify), work / "onnx-int8-static", overwrite=True)
    torch_int8 = quantize(src, QuantizeConfig(method=TorchDynamicConfig(), eval_samples=verify),
                          work / "torch-int8-dynamic", overwrite=True)
    named = [("pytorch fp32 eager", src), ("onnx fp32 fused", fp32), ("onnx int8 dynamic", dynamic),
             ("onnx int8 static", static), ("pytorch int8 dynamic", torch_int8)]
    return [Variant(label + name, group, path) for name, path in named]


def make_runner(path: Path, threads: int, spinning: bool):
    """A batch-1 callable on prepared features: the bare model call (session.run or model forward)."""
    import torch

    kind = read_manifest(path)["model"]["kind"]
    if kind == "onnx":
        session = create_session(path / "model.onnx", "cpu", threads, spinning=spinning)
        return lambda features: session.run(["logits"], features)[0]
    model = load_predictor(path).model.eval()

    def run(features):
        with torch.inference_mode():
            return model(**features).logits
    return run


def prepare_inputs(variant: Variant, sentences: list[str], task: dict) -> list[dict]:
    import torch

    manifest = read_manifest(variant.artifact)
    tokenizer = load_tokenizer(variant.artifact)
    max_length = task.get("max_length", 128)
    if manifest["model"]["kind"] == "onnx":
        names = manifest["model"]["inputs"]
        return [{n: np.asarray([ids], dtype=np.int64) for n, ids in tokenizer(s, truncation=True,
                                                                              max_length=max_length).items()
                 if n in names} for s in sentences]
    return [{k: torch.tensor([v]) for k, v in tokenizer(s, truncation=True, max_length=max_length).items()}
            for s in sentences]


def score_variants(variants: list[Variant], test) -> None:
    references = {}
    for v in variants:
        predictor = load_predictor(v.artifact)
        logits = predictor.logits(test.texts, test.pairs)
        report = scores(logits, test, predictor.labels)
        if v.group not in references:  # the first variant of a group is its PyTorch model
            references[v.group] = logits.argmax(-1)
        report["label_agreement"] = float((logits.argmax(-1) == references[v.group]).mean())
        v.report = report


def scores(logits, dataset, labels) -> dict:
    index = {str(label): i for i, label in enumerate(labels)}
    report = classification_report([index[str(label)] for label in dataset.labels], logits.argmax(-1), labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "samples": report["samples"]}


def summarize(variants: list[Variant]) -> list[dict]:
    rows = []
    for v in variants:
        base = next(u for u in variants if u.group == v.group)
        onnx_fp32 = next(u for u in variants if u.group == v.group and u.name.endswith("onnx fp32 fused"))
        model = read_manifest(v.artifact)["model"]
        times = np.array(v.times) * 1000
        rows.append({
            "name": v.name, "group": v.group, "artifact": str(v.artifact), "kind": model["kind"],
            "variant": model.get("variant", "fp32"),
            "latency_ms": {"mean": float(times.mean()), "p50": float(np.percentile(times, 50)),
                           "p90": float(np.percentile(times, 90))},
            "speedup_vs_pytorch": float(np.mean(base.times) / np.mean(v.times)),
            "speedup_vs_onnx_fp32": float(np.mean(onnx_fp32.times) / np.mean(v.times)),
            "speedup_vs_parent_pytorch": float(np.mean(variants[0].times) / np.mean(v.times)),
            "speedup_vs_pytorch_per_round": [b / r for b, r in zip(base.round_means, v.round_means)],
            "fusion": model.get("fusion"), "heads_per_layer": model.get("heads_per_layer"),
            "size_bytes": model.get("size_bytes") or weights_size(v.artifact), **v.report,
            "accuracy_drop_vs_pytorch_points": 100 * (next(
                u for u in variants if u.group == v.group).report["accuracy"] - v.report["accuracy"])})
    return rows


def weights_size(path: Path) -> int | None:
    files = list(Path(path).glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def quality_checks(rows: list[dict]) -> list[dict]:
    """The issue's quality bar, stated as measured (MISS is reported, never hidden)."""
    checks = []
    for group in dict.fromkeys(r["group"] for r in rows):
        by = {r["name"].removeprefix("pruned "): r for r in rows if r["group"] == group}
        fp32, dyn = by["onnx fp32 fused"], by["onnx int8 dynamic"]

        def check(what, value, limit, ok, group=group):
            checks.append({"group": group, "check": what, "value": value, "limit": limit, "pass": bool(ok)})

        check("onnx fp32 fused speed-up vs pytorch fp32 (>= 2x)", fp32["speedup_vs_pytorch"], 2.0,
              fp32["speedup_vs_pytorch"] >= 2.0)
        check("onnx fp32 label agreement with pytorch (>= 99.5%)", fp32["label_agreement"], 0.995,
              fp32["label_agreement"] >= 0.995)
        check("onnx int8 dynamic speed-up vs onnx fp32 (>= 1.7x)", dyn["speedup_vs_onnx_fp32"], 1.7,
              dyn["speedup_vs_onnx_fp32"] >= 1.7)
        drop = 100 * (fp32["accuracy"] - dyn["accuracy"])
        check("onnx int8 dynamic accuracy drop vs onnx fp32 (<= 0.5 points)", drop, 0.5, drop <= 0.5)
    return checks


def print_table(console, rows: list[dict], checks: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="batch-1 latency on SST-2 test sentences (model call only), accuracy on test.tsv")
    columns = ["variant", "mean ms", "p50 ms", "x vs pytorch", "x vs onnx fp32", "accuracy %", "agree %", "MB"]
    pruned = any(r["group"] == "pruned" for r in rows)
    if pruned:
        columns.insert(5, "x vs parent pytorch")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in rows:
        cells = [r["name"], f"{r['latency_ms']['mean']:.2f}", f"{r['latency_ms']['p50']:.2f}",
                 f"{r['speedup_vs_pytorch']:.2f}", f"{r['speedup_vs_onnx_fp32']:.2f}", f"{100 * r['accuracy']:.2f}",
                 f"{100 * r['label_agreement']:.2f}", f"{r['size_bytes'] / 2**20:.1f}" if r.get("size_bytes") else "-"]
        if pruned:
            cells.insert(5, f"{r['speedup_vs_parent_pytorch']:.2f}")
        table.add_row(*cells)
    table.caption = ("x = mean latency ratio, measured interleaved in this run; agree = same label as the PyTorch "
                     "model of its group")
    console.print(table)
    for c in checks:
        value = f"{100 * c['value']:.2f}%" if "agreement" in c["check"] else f"{c['value']:.2f}"
        mark = "[green]PASS[/green]" if c["pass"] else "[bold red]MISS[/bold red]"
        console.print(f"{mark} {c['group']}: {c['check']}: {value}")


if __name__ == "__main__":
    sys.exit(main())
