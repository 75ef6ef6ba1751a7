"""ONNX Runtime and OpenVINO side by side on SST-2: parity with PyTorch, speed at batch 1 and 8, and whether
`bertc optimize --serve-batch 8` ships the fastest runtime.

For the fine-tuned parent (--parent) and the full-preset winner's student (3 layers, FFN 50%) this builds, with
bertc's library calls (the code behind `bertc export` and `bertc quantize`):

    pytorch   the PyTorch artifact as given
    ort-fp32  fused ONNX (`export`), verified against PyTorch on validation.tsv
    ort-int8  ONNX Runtime dynamic int8 of ort-fp32 (`quantize`, DynamicQuantConfig): the speed baseline
    ov-fp32   OpenVINO IR run in f32 (`export --openvino`)
    ov-bf16   OpenVINO IR run in bf16, only where OpenVINO reports bf16 on this CPU (AVX512-BF16 or AMX)
    ov-int8   NNCF int8 of ov-fp32, calibrated on --calibration-samples rows of train.tsv

The student is --student when given; else the PyTorch student of --optimize-dir's shipped model (from its
lineage); else it is built here from the parent with the full preset's recipe (distilled to 3 layers on
--distill-samples rows, FFN pruned to 50% and recovered by distillation on --recover-samples rows; smaller
budgets make a student of the same shape, not the full-preset winner, and the JSON says which).

Then, in one run:
- accuracy of every variant on all of test.tsv (GLUE SST-2 dev; builds verify and calibrate on validation.tsv
  and train.tsv, never on test), each difference to the same model's PyTorch with a paired bootstrap 95%
  interval. Bars (issue 16), on the fine-tuned parent: OpenVINO fp32 within 0.2 points of PyTorch, NNCF int8
  within 0.5 (absolute differences); the student's are printed for information;
- p50 latency and throughput at batch 1 and 8 on real test.tsv sentences with `bertc bench`, one call per model
  so that its variants are interleaved round by round; speedups are over ORT int8 of the same model (the median
  of per-round ratios with their range). Fastest at batch 1 is the lowest p50, at batch 8 the highest
  throughput; "by how much" is the per-round p50 ratio of the runner-up over the winner, with its range;
- with --optimize-dir (a finished `bertc optimize --serve-batch 8` run): the shipped model's batch-8 throughput
  over the fastest variant's found here, bar >= 0.95; once as that run measured it (its bench.json: another run,
  on its selection slice) and once with its best/ benched here, interleaved with the student's variants.
The CPU model, its int8/bf16 flags, OpenVINO's CPU capabilities and the package versions go in the JSON.

    python benchmarks/runtimes.py                                   # builds the student (estimated: ~1 h, 2 cores)
    python benchmarks/runtimes.py --student DIR --optimize-dir RUN  # the shipping check for a given run
    python benchmarks/runtimes.py --quick --out /tmp/runtimes.json  # smoke test, barely trained student
    python benchmarks/runtimes.py --reuse                           # keep artifacts already built in --work
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sst2_common import PARENT, SST2, accuracy_rows  # noqa: E402

from bertc.artifact import is_artifact, read_manifest  # noqa: E402
from bertc.bench.bench import bench  # noqa: E402
from bertc.bench.config import BenchConfig  # noqa: E402
from bertc.bench.results import speedup  # noqa: E402
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig  # noqa: E402
from bertc.compress.distill import distill  # noqa: E402
from bertc.compress.prune import prune  # noqa: E402
from bertc.data.config import Columns, DataConfig  # noqa: E402
from bertc.data.load import read_dataset  # noqa: E402
from bertc.environment import cpu_model, environment  # noqa: E402
from bertc.errors import BertcError  # noqa: E402
from bertc.export.config import DynamicQuantConfig, ExportConfig, NncfInt8Config, QuantizeConfig  # noqa: E402
from bertc.export.onnx import export  # noqa: E402
from bertc.export.quantize import quantize  # noqa: E402
from bertc.inference.openvino import EXTRA, cpu_capabilities, import_openvino  # noqa: E402
from bertc.optimize.config import DISTILL_LR, PRESETS, RECOVER_LR  # noqa: E402
from bertc.optimize.rundir import BENCH_FILE, STATE_FILE  # noqa: E402
from bertc.optimize.runtimes import bf16_problem, openvino_installed, runtime_of  # noqa: E402
from bertc.optimize.stages import LAYERS_LOSS  # noqa: E402
from bertc.training.config import TrainConfig  # noqa: E402

# key: (runtime, precision), in table order
VARIANTS = {"pytorch": ("PyTorch", "fp32"), "ort-fp32": ("ONNX Runtime", "fp32"),
            "ort-int8": ("ONNX Runtime", "int8 dynamic"), "ov-fp32": ("OpenVINO", "fp32"),
            "ov-bf16": ("OpenVINO", "bf16"), "ov-int8": ("OpenVINO", "int8 NNCF"), "shipped": ("optimize best/", "")}
BASELINE = "ort-int8"
PARITY_BARS = {"ov-fp32": 0.2, "ov-int8": 0.5}  # points of test accuracy from PyTorch, either way
SHIPPING_BAR = 0.95
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or (Path(scratch) if args.quick else REPO.parent / "runs" / "runtimes")
        work.mkdir(parents=True, exist_ok=True)
        if not is_artifact(args.parent):
            sys.exit(f"no parent artifact at {args.parent}; make it with `bertc finetune --train {SST2}/train.tsv "
                     f"--eval {SST2}/validation.tsv --max-train-samples 16000 --epochs 1 --out {args.parent}`")
        if args.student and not is_artifact(args.student):
            sys.exit(f"--student {args.student} is not a bertc artifact; pass a PyTorch student, or drop --student")
        shipped = read_optimize_run(args.optimize_dir) if args.optimize_dir else None
        started = time.perf_counter()
        student, origin = pick_student(args, shipped, work)
        bf16_note = bf16_problem() if openvino_installed() else None
        built, skipped = {}, {}
        for group, src in (("parent", args.parent), ("student", student)):
            built[group], skipped[group] = build_variants(src, work / group, args, bf16_note)
        build_seconds = time.perf_counter() - started
        test = read_dataset(str(SST2 / "test.tsv"), Columns("sentence", None, "label"), split="test")
        test = test.head(64 if args.quick else None)
        accuracy = {group: accuracy_rows(models, test, "pytorch") for group, models in built.items()}
        extra = {"shipped": shipped["best"]} if shipped and is_artifact(shipped["best"]) else {}
        latency = {group: timing(models, extra if group == "student" else {}, work / f"bench-{group}.json", args)
                   for group, models in built.items()}
    fastest = {group: [fastest_at(latency[group]["rows"], list(built[group]), b) for b in (1, 8)] for group in built}
    checks = parity_checks(accuracy)
    if shipped:
        checks += shipping_checks(shipped, student, latency["student"]["rows"], fastest["student"][1])
    result = {"benchmark": "runtimes", "quick": args.quick, "command": " ".join(sys.argv), "test_rows": len(test),
              "parent": str(args.parent), "student": {"path": str(student), **origin},
              "variants": {g: {k: str(p) for k, p in models.items()} for g, models in built.items()},
              "not_measured": skipped, "accuracy": accuracy, "latency": latency, "fastest": fastest, "checks": checks,
              "optimize_run": plain(shipped) if shipped else None, "build_seconds": round(build_seconds),
              "cpu": cpu_features(), "environment": environment(args.threads), "options": plain(vars(args))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(f"wrote {args.out}")


def plain(record: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in record.items()}


def parse_args() -> argparse.Namespace:
    full = PRESETS["full"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=Path, default=PARENT, help="fine-tuned PyTorch artifact")
    parser.add_argument("--student", type=Path, help="PyTorch artifact of the student (default: see the docstring)")
    parser.add_argument("--optimize-dir", type=Path, help="a finished `bertc optimize --serve-batch 8` run")
    parser.add_argument("--work", type=Path, help="artifacts go here (default ../runs/runtimes; --quick: a temp dir)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "runtimes.json")
    parser.add_argument("--distill-samples", type=int, default=full.distill_samples, help="student: 3-layer distill")
    parser.add_argument("--recover-samples", type=int, default=full.recover_samples, help="student: FFN recovery")
    parser.add_argument("--importance-samples", type=int, default=full.importance_samples)
    parser.add_argument("--calibration-samples", type=int, default=300, help="NNCF int8 calibration rows")
    parser.add_argument("--runs", type=int, default=full.bench_runs, help="timed calls per variant and batch size")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the calls are split into")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, help="threads for every variant (default: all usable cores)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets, 64 test rows")
    parser.add_argument("--reuse", action="store_true", help="keep artifacts already built in --work")
    args = parser.parse_args()
    if args.quick:
        args.distill_samples = args.recover_samples = 64
        args.importance_samples, args.calibration_samples = 32, 32
        args.runs, args.rounds, args.warmup = 16, 2, 2
        if args.out == parser.get_default("out"):
            args.out = Path(tempfile.gettempdir()) / "runtimes_quick.json"
    return args


def train_config(lr: float, args) -> TrainConfig:
    return TrainConfig(lr=lr, epochs=1, batch_size=32, device="cpu", save_steps=200, logging_steps=20,
                       max_steps=2 if args.quick else None)


def pick_student(args, shipped: dict | None, work: Path) -> tuple[Path, dict]:
    """The student's path and where it comes from (given, the optimize run's, or built here and how)."""
    if args.student:
        return args.student, {"source": "given with --student", "full_preset_winner": None}
    if shipped and shipped["student"]:
        return shipped["student"], {"source": f"the student of {shipped['dir']}'s shipped model",
                                    "full_preset_winner": shipped["preset"] == "full"}
    full = PRESETS["full"]
    recipe = {"distill_samples": args.distill_samples, "recover_samples": args.recover_samples,
              "importance_samples": args.importance_samples}
    data = {n: DataConfig(train=str(SST2 / "train.tsv"), eval=str(SST2 / "validation.tsv"), max_train_samples=n,
                          max_eval_samples=200 if args.quick else full.selection_samples)
            for n in (args.distill_samples, args.recover_samples)}
    layers, student = work / "student-layers3", work / "student-layers3-ffn50"
    if not (args.reuse and is_artifact(student)):
        if not (args.reuse and is_artifact(layers)):
            distill(args.parent, DistillConfig(student_layers=3, data=data[args.distill_samples], loss=DistillLoss(
                **LAYERS_LOSS), train=train_config(DISTILL_LR, args)), layers, overwrite=True)
        prune(layers, PruneConfig(ffn=0.5, data=data[args.recover_samples], distill=True,
                                  recover=train_config(RECOVER_LR, args),
                                  importance_samples=args.importance_samples), student, overwrite=True)
    same = not args.quick and recipe == {k: getattr(full, k) for k in recipe}
    return student, {"source": "built here: distilled to 3 layers, FFN pruned to 50%", "recipe": recipe,
                     "full_preset_winner": False, "full_preset_recipe": same,
                     "note": "the full preset's recipe, not its artifact" if same else
                             "smaller budgets than the full preset: same shape, not the full-preset winner"}


def build_variants(src: Path, work: Path, args, bf16_note: str | None) -> tuple[dict[str, Path], dict[str, str]]:
    """Every runtime's artifact of ``src``; what could not be built, with the reason."""
    valid, verify = str(SST2 / "validation.tsv"), 64 if args.quick else 1000

    def ir(precision: str) -> ExportConfig:
        return ExportConfig(openvino=True, inference_precision=precision, data=valid, verify_samples=verify)

    def quantized(method) -> QuantizeConfig:
        return QuantizeConfig(method=method, eval_data=valid, eval_samples=verify)

    recipes = {"ort-fp32": ("pytorch", export, ExportConfig(data=valid, verify_samples=verify)),
               "ort-int8": ("ort-fp32", quantize, quantized(DynamicQuantConfig())),
               "ov-fp32": ("pytorch", export, ir("f32")), "ov-bf16": ("pytorch", export, ir("bf16")),
               "ov-int8": ("ov-fp32", quantize, quantized(NncfInt8Config(
                   calibration_data=str(SST2 / "train.tsv"), calibration_samples=args.calibration_samples)))}
    built, skipped = {"pytorch": Path(src)}, {}
    for key, (source, stage, config) in recipes.items():
        if key.startswith("ov-") and not openvino_installed():
            skipped[key] = f"OpenVINO is not installed ({EXTRA})"
        elif key == "ov-bf16" and bf16_note:
            skipped[key] = f"not supported on this CPU: {bf16_note}"
        elif source not in built:
            skipped[key] = f"not built: {source} is missing"
        else:
            out = work / key
            try:
                if not (args.reuse and is_artifact(out)):
                    stage(built[source], config, out, overwrite=True)
                built[key] = out
            except BertcError as err:
                skipped[key] = f"failed: {err}"
                print(f"{work.name} {key} failed: {err}", flush=True)
    return built, skipped


def timing(models: dict[str, Path], extra: dict[str, Path], out: Path, args) -> dict:
    """Batch 1 and 8 of one model's variants (and ``extra``), interleaved in one `bertc bench` call."""
    measured = {**models, **extra}
    baseline = BASELINE if BASELINE in models else "pytorch"
    config = BenchConfig(data=str(SST2 / "test.tsv"), max_samples=64 if args.quick else None, batch_sizes=(1, 8),
                         runs=args.runs, rounds=args.rounds, warmup=args.warmup, threads=args.threads,
                         accuracy=False, memory=False, baseline=str(measured[baseline]))
    results = bench(list(measured.values()), config, out, overwrite=True)
    by_path = {Path(v["path"]).resolve(): v for v in results["variants"]}
    keep = ("p50_ms", "throughput", "throughput_min", "throughput_max", "speedup", "speedup_min", "speedup_max",
            "round_p50_ms")
    rows = {key: {f"batch{row['batch_size']}": {k: row.get(k) for k in keep}
                  for row in by_path[Path(path).resolve()]["latency"]} for key, path in measured.items()}
    env = results["environment"]
    return {"baseline": baseline, "rows": rows, "bench": str(out), "threads": env.get("threads"),
            "other_load": env.get("other_load")}


def fastest_at(rows: dict, keys: list[str], batch: int) -> dict:
    """The fastest variant at ``batch`` and its margin over the runner-up (per-round p50 ratio, with range)."""
    ranked = sorted(keys, key=lambda k: rows[k][f"batch{batch}"]["p50_ms"] if batch == 1
                    else -rows[k][f"batch{batch}"]["throughput"])
    winner = rows[ranked[0]][f"batch{batch}"]
    found = {"batch_size": batch, "fastest": ranked[0], "p50_ms": winner["p50_ms"], "throughput": winner["throughput"]}
    if len(ranked) > 1:
        second = rows[ranked[1]][f"batch{batch}"]
        found.update(runner_up=ranked[1], margin=speedup(winner, second),
                     throughput_ratio=winner["throughput"] / second["throughput"])
    return found


def parity_checks(accuracy: dict) -> list[dict]:
    checks = []
    for group, rows in accuracy.items():
        for key, bar in PARITY_BARS.items():
            if key in rows:
                difference = rows[key]["vs_pytorch"]["difference"]
                checks.append({"group": group, "check": f"{key} test accuracy vs PyTorch (points)",
                               "value": round(difference, 2), "bar": f"|difference| <= {bar}",
                               "ok": abs(difference) <= bar, "issue_bar": group == "parent"})
    return checks


def read_optimize_run(directory: Path) -> dict:
    """What a finished `bertc optimize` run shipped, its batch-8 throughput there, and its PyTorch student."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
        results = json.loads((directory / BENCH_FILE).read_text())
    except (OSError, ValueError) as err:
        sys.exit(f"cannot read the optimize run in {directory} ({err}); pass a finished `bertc optimize` --out")
    if not state.get("finished"):
        sys.exit(f"the optimize run in {directory} has not finished; finish it with --resume first")
    winner = state["result"]["winner"]
    variant = next(v for v in results["variants"] if v["name"] == winner)
    row = next((r for r in variant["latency"] if r["batch_size"] == 8 and r["seq_len"] == "real"), None)
    manifest = read_manifest(directory / "best")
    steps = [*manifest.get("lineage", []), {"path": variant["path"], "stage": manifest.get("stage")}]
    student = next((Path(s["path"]) for s in reversed(steps) if s.get("stage") in ("distill", "prune")), None)
    if student is not None and not is_artifact(student):  # a relative path from where the run was started
        student = directory / "stages" / student.name
    return {"dir": directory, "winner": winner, "runtime": runtime_of(variant), "best": directory / "best",
            "kind": manifest["model"].get("kind"), "variant": manifest["model"].get("variant"),
            "serve_batch": state.get("config", {}).get("serve_batch"), "preset": state.get("config", {}).get("preset"),
            "batch8_throughput": row["throughput"] if row else None, "bench_data": results.get("data"),
            "student": student if student is not None and is_artifact(student) else None}


def shape(path: Path) -> tuple:
    model = read_manifest(path)["model"]
    return tuple(str(model.get(k)) for k in ("num_layers", "hidden_size", "heads_per_layer", "ffn_per_layer"))


def shipping_checks(shipped: dict, student: Path, rows: dict, fastest8: dict) -> list[dict]:
    """The shipped model's batch-8 throughput over the fastest found here: as its run measured it, and here."""
    same = shipped["student"] is not None and Path(shipped["student"]).resolve() == Path(student).resolve()
    same_shape = shipped["student"] is not None and shape(shipped["student"]) == shape(student)
    note = ("same student" if same else "a different student of the same shape" if same_shape else
            f"a different student ({shipped['student'] or 'the shipped model has none'}) than --student")
    if shipped["serve_batch"] != 8:
        note += f"; the run served batch {shipped['serve_batch']}, not 8"
    best = fastest8["throughput"]
    checks = []
    here = rows["shipped"]["batch8"]["throughput"] if "shipped" in rows else None
    for what, throughput in (("as the optimize run measured it (another run, its selection slice)",
                              shipped["batch8_throughput"]), ("benched here, interleaved", here)):
        ratio = None if throughput is None else throughput / best
        checks.append({"group": "student", "check": f"shipped {shipped['winner']} ({shipped['runtime']}) batch-8 "
                       f"throughput over the fastest here ({fastest8['fastest']}), {what}; {note}",
                       "value": None if ratio is None else round(ratio, 3), "bar": f">= {SHIPPING_BAR}",
                       "ok": ratio is not None and ratio >= SHIPPING_BAR, "issue_bar": True})
    return checks


def cpu_features() -> dict:
    """The CPU flags that decide int8 and bf16 speed, and what OpenVINO's CPU plugin says it can run."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
        flags = [f for f in CPU_FEATURES if f in line.split(":", 1)[1].split()]
    except (OSError, StopIteration):
        flags = []
    found = {"model": cpu_model(), "flags": flags}
    if openvino_installed():
        found["openvino_capabilities"] = cpu_capabilities(import_openvino().Core())
    return found


def interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"


def times(row: dict) -> str:
    """A speedup with its per-round range."""
    if row.get("speedup") is None:
        return "-"
    return f"{row['speedup']:.2f}x{interval(row['speedup_min'], row['speedup_max'])}"


def print_report(result: dict) -> None:
    cpu = result["cpu"]
    print(f"\n{cpu['model']}; flags {' '.join(cpu['flags']) or 'none'}; OpenVINO capabilities "
          f"{' '.join(cpu.get('openvino_capabilities', [])) or '-'}; threads {result['latency']['parent']['threads']}")
    print(f"student: {result['student']['path']} ({result['student']['source']})")
    print(f"\n{'model':<8} {'runtime':<14} {'precision':<13} {'test %':>7} {'vs PyTorch [95% CI]':>22} "
          f"{'b1 p50 ms':>9} {'b1 x ORT int8 [range]':>24} {'b8 rows/s':>9} {'b8 x ORT int8 [range]':>24}")
    for group, timed in result["latency"].items():
        for key, row in timed["rows"].items():
            runtime, precision = VARIANTS[key]
            accuracy = result["accuracy"][group].get(key, {})
            vs = accuracy.get("vs_pytorch")
            ci = f"{vs['difference']:+.2f}{interval(vs['low'], vs['high'])}" if vs else ""
            test = f"{accuracy['accuracy']:.2f}" if accuracy else "-"
            cells = [f"{row[f'batch{b}'][k]:.{p}f}" for b, k, p in ((1, "p50_ms", 3), (8, "throughput", 0))]
            speed = [times(row[f"batch{b}"]) for b in (1, 8)]
            print(f"{group:<8} {runtime:<14} {precision:<13} {test:>7} {ci:>22} {cells[0]:>9} {speed[0]:>24} "
                  f"{cells[1]:>9} {speed[1]:>24}")
    for group, reasons in result["not_measured"].items():
        for key, reason in reasons.items():
            print(f"not measured: {group} {key}: {reason}")
    print()
    for group, found in result["fastest"].items():
        for f in found:
            by = (f" by {times(f['margin'])} p50 over {f['runner_up']} ({f['throughput_ratio']:.2f}x its rows/s)"
                  if "margin" in f else "")
            print(f"fastest at batch {f['batch_size']} ({group}): {f['fastest']} ({' '.join(VARIANTS[f['fastest']])}),"
                  f" {f['p50_ms']:.3f} ms p50, {f['throughput']:.0f} rows/s{by}")
    print()
    for c in result["checks"]:
        mark = ("PASS" if c["ok"] else "FAIL") if c["issue_bar"] else "info"
        print(f"{mark}  {c['group']}: {c['check']}: {c['value']} (bar {c['bar']})")


if __name__ == "__main__":
    main()
