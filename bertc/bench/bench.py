"""`bertc bench`: latency, throughput, memory, size and accuracy of every variant of a model, side by side.

Every figure lands in one results JSON (format ``bertc-bench-results``, version ``RESULTS_VERSION``) with the
environment it was measured in; ``bertc report`` turns one or more of them into a report. How latency and
memory are measured is described in ``bertc.bench.latency`` and ``bertc.bench.memory``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from bertc.artifact import is_artifact, read_manifest
from bertc.bench.config import BenchConfig
from bertc.bench.latency import (
    Runner,
    Setting,
    check_device,
    check_fixed_lengths,
    make_batches,
    measure,
    open_backend,
    planned_calls,
    speedup,
    summarize,
)
from bertc.errors import BertcError
from bertc.jsonio import to_jsonable

RESULTS_FORMAT = "bertc-bench-results"
RESULTS_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".data", ".onnx_data", ".pt", ".bin")
KINDS = ("pytorch", "pytorch-quantized", "onnx")


def bench(artifacts: list[Path | str], config: BenchConfig, out: Path | str, *, overwrite: bool = False) -> dict:
    """Measure every artifact on the same data and machine; write and return the results dict."""
    out = check_results_output(out, overwrite)
    variants = describe_variants(artifacts, config.baseline)
    check_variants(variants, config)
    dataset = read_data(config, variants)
    threads = config.threads or usable_threads()
    before = other_load(warn=True)
    started = cpu_counters()
    with tempfile.TemporaryDirectory(prefix="bertc-standard-") if config.standard_recipe else nullcontext() as tmp:
        if tmp:
            variants += standard_recipe_variants(variants, Path(tmp), config)
        settings = [Setting(b, s) for s in config.seq_lens for b in sorted(set(config.batch_sizes))]
        measure_all(variants, dataset, settings, config, threads)
    results = assemble(variants, settings, config, threads, dataset)
    results["environment"]["other_load"] = {"before": before, "during": cores_used_by_others(started, cpu_counters())}
    from bertc.jsonio import write_json

    write_json(out, results)
    return results


def check_results_output(out: Path | str, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise BertcError(f"--out {out} is a directory; pass a file name such as results.json")
    if out.exists() and not overwrite:
        raise BertcError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    return out


def describe_variants(artifacts, baseline: str | None) -> list[dict]:
    """One record per artifact (baseline first), read from its manifest; fails on anything not bertc's."""
    paths = [Path(a).absolute() for a in artifacts]
    if baseline is not None:
        base = Path(baseline).absolute()
        paths = [base] + [p for p in paths if p.resolve() != base.resolve()]
    if not paths:
        raise BertcError("no artifacts to bench; pass one or more artifact directories")
    seen, variants = set(), []
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        variants.append(describe_variant(path))
    names = [v["name"] for v in variants]
    for v in variants:
        if names.count(v["name"]) > 1:
            v["name"] = f"{Path(v['path']).parent.name}/{v['name']}"
    return variants


def describe_variant(path: Path, standard_recipe: bool = False) -> dict:
    manifest = read_manifest(path)
    model = manifest.get("model", {})
    kind = model.get("kind", "pytorch")
    return {
        "name": path.name, "path": str(path), "kind": kind,
        "backend": "onnxruntime" if kind == "onnx" else "pytorch-eager",
        "stage": manifest.get("stage"), "variant": model.get("variant"), "quantization": model.get("quantization"),
        "standard_recipe": standard_recipe,
        "labels": [str(label) for label in manifest.get("task", {}).get("labels", [])],
        "lineage": lineage(path, manifest),
        "size_bytes": model_size(path), "num_parameters": num_parameters(path, model),
        "_manifest": manifest,
    }


def lineage(path: Path, manifest: dict) -> list[dict]:
    """The steps that made the artifact, oldest first, ending with the artifact itself."""
    steps = []
    for record in [*manifest.get("lineage", []), {"path": str(path), "stage": manifest.get("stage")}]:
        step = {"stage": record.get("stage"), "path": record.get("path")}
        source = Path(record.get("path") or "")
        if is_artifact(source):
            step["summary"] = step_summary(manifest if source == path else read_manifest(source))
        steps.append(step)
    return steps


def step_summary(manifest: dict) -> str:
    model, parts = manifest.get("model", {}), []
    kind = model.get("kind", "pytorch")
    parts.append(" ".join(str(x) for x in (kind, model.get("variant"), model.get("quantization")) if x))
    if model.get("heads_per_layer"):
        heads, ffn = model["heads_per_layer"], model.get("ffn_per_layer") or []
        parts.append(f"{len(heads)} layers, {sum(heads)} heads, FFN {sum(ffn)}")
    if model.get("num_parameters"):
        parts.append(f"{model['num_parameters'] / 1e6:.2f}M parameters")
    accuracy = manifest.get("metrics", {}).get("eval", {}).get("accuracy")
    if accuracy is not None:
        parts.append(f"eval accuracy {100 * accuracy:.2f}%")
    return "; ".join(parts)


def model_size(path: Path) -> int:
    """Bytes of the weight files (safetensors, ONNX graph and external data), not the tokenizer."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))


def num_parameters(path: Path, model: dict) -> int | None:
    """From the manifest; for ONNX without one, the element count of the graph's weight initializers."""
    if model.get("num_parameters"):
        return int(model["num_parameters"])
    graph = Path(path) / "model.onnx"
    if not graph.is_file():
        return None
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer if len(t.dims) >= 1))


def check_variants(variants: list[dict], config: BenchConfig) -> None:
    """Everything that would fail later, checked before any model is loaded."""
    problems = []
    for v in variants:
        if v["kind"] not in KINDS:
            problems.append(f"{v['path']} holds a '{v['kind']}' model; bertc bench times {', '.join(KINDS)} artifacts")
        if v["labels"] != variants[0]["labels"]:
            problems.append(f"{v['path']} predicts labels {v['labels']} but {variants[0]['path']} predicts "
                            f"{variants[0]['labels']}; bench variants of one task together")
    if problems:
        raise BertcError("; ".join(problems))
    for kind in sorted({v["kind"] for v in variants}):
        check_device(config.device, kind)
    for v in variants:
        check_fixed_lengths(Path(v["path"]), config.seq_lens)
    if config.standard_recipe:
        standard_recipe_functions()
        unpruned_parent(variants[0])


def read_data(config: BenchConfig, variants: list[dict]):
    from bertc.data.config import Columns
    from bertc.data.prepare import read_eval_data

    task = variants[0]["_manifest"].get("task", {})
    if config.text_pair_column and not task.get("text_pair_column"):
        raise BertcError(f"--text-pair-column {config.text_pair_column}: {variants[0]['path']} was trained on "
                         "single texts and does not know a second text column; drop the option")
    columns = Columns(config.text_column or task.get("text_column"),
                      config.text_pair_column or task.get("text_pair_column"),
                      config.label_column or task.get("label_column"))
    dataset, _ = read_eval_data(config.data, columns, split=config.split, max_samples=config.max_samples)
    unknown = sorted({str(label) for label in dataset.labels} - set(variants[0]["labels"]))
    if unknown:
        raise BertcError(f"{dataset.source} has labels the models do not know ({', '.join(unknown[:5])}); "
                         f"they predict {', '.join(variants[0]['labels'])}. Pass data of the same task")
    return dataset


def cpu_counters() -> tuple[float, float, float] | None:
    """(wall seconds, CPU seconds the whole machine spent busy, CPU seconds of this process and its children),
    from /proc/stat; None where there is none."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


def cores_used_by_others(start, end) -> float | None:
    """Cores other processes kept busy between two :func:`cpu_counters`. Not the load average: that counts this
    process too, so it reads "busy" right after bertc itself trained or benched."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return round(max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]), 2)


def other_load(warn: bool = False, seconds: float = 0.5) -> float | None:
    """Cores other processes use now (sampled over ``seconds``); other work makes every timing noisy, so say so."""
    from bertc.environment import usable_cores

    start = cpu_counters()
    time.sleep(seconds)
    load = cores_used_by_others(start, cpu_counters())
    if warn and load is not None and load > 0.25 * usable_cores():
        from bertc.console import console

        console.print(f"warning: the machine is busy (other processes use {load:.1f} of {usable_cores()} cores); "
                      "timings will be noisy, and multi-threaded PyTorch suffers most. Bench on an idle machine "
                      "for figures you will quote", style="yellow")
    return load


def usable_threads() -> int:
    from bertc.environment import usable_cores

    return usable_cores()


def measure_all(variants: list[dict], dataset, settings: list[Setting], config: BenchConfig, threads: int) -> None:
    """Fill each variant record with accuracy, latency per setting and memory, under one progress display."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bertc.artifact import load_tokenizer
    from bertc.console import console
    from bertc.export.runtime import OnnxPredictor
    from bertc.inference import load_predictor, score_dataset

    previous_threads = torch.get_num_threads()
    rounds = min(config.rounds, config.runs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            loading = progress.add_task("loading" + (" + accuracy" if config.accuracy else ""), total=len(variants))
            backends, tokenizers = {}, {}
            for v in variants:
                path, manifest = Path(v["path"]), v["_manifest"]
                if v["kind"] == "onnx":  # one session: the timing one scores accuracy too
                    backend = open_backend(path, manifest, config.device, threads)
                    task = manifest["task"]
                    predictor = OnnxPredictor(backend.session, load_tokenizer(path), task["labels"],
                                              task.get("max_length", 128))
                else:  # the predictor's model is the one timed
                    predictor = load_predictor(path, device=config.device)
                    backend = open_backend(path, manifest, config.device, threads, predictor)
                if config.accuracy:
                    report = score_dataset(predictor, dataset)
                    v.update(accuracy=report["accuracy"], macro_f1=report["macro_f1"], samples=report["samples"])
                tokenizers[v["name"]] = getattr(predictor, "tokenizer", None) or load_tokenizer(path)
                backends[v["name"]] = backend
                del predictor
                progress.advance(loading)
            total = len(settings) * planned_calls(len(variants), warmup=config.warmup, runs=config.runs, rounds=rounds)
            timing = progress.add_task("latency", total=total)
            for v in variants:
                v["latency"] = []
            for setting in settings:
                progress.update(timing, description=f"latency: {setting.label}")
                batches = {v["name"]: make_batches(tokenizers[v["name"]], dataset.texts, dataset.pairs, setting,
                                                   max_length(v), config.seed) for v in variants}
                runners = {name: Runner(backends[name], batches[name]) for name in batches}
                times = measure(runners, warmup=config.warmup, runs=config.runs, rounds=rounds,
                                duration=config.duration, advance=lambda n: progress.advance(timing, n))
                for v in variants:
                    shapes = batch_shapes(batches[v["name"]])
                    v["latency"].append({"batch_size": setting.batch_size, "seq_len": setting.seq_len, **shapes,
                                         **summarize(times[v["name"]], setting.batch_size)})
                del runners
            progress.update(timing, completed=total, description="latency")
            if config.memory:
                memory = progress.add_task("peak memory (child processes)", total=len(variants))
                for v in variants:
                    batch = largest_batch(tokenizers[v["name"]], dataset, settings, max_length(v), config.seed)
                    from bertc.bench.memory import peak_memory

                    v["memory"] = peak_memory(Path(v["path"]), config.device, threads, batch)
                    progress.advance(memory)
    finally:
        torch.set_num_threads(previous_threads)


def max_length(variant: dict) -> int:
    return int(variant["_manifest"].get("task", {}).get("max_length") or 128)


def batch_shapes(batches: list[dict[str, np.ndarray]]) -> dict:
    """How long the timed rows were: mean padded length and mean attended tokens per row."""
    return {"padded_length_mean": float(np.mean([b["input_ids"].shape[1] for b in batches])),
            "tokens_per_row_mean": float(np.mean([b["attention_mask"].sum(axis=1).mean() for b in batches]))}


def largest_batch(tokenizer, dataset, settings: list[Setting], length: int, seed: int) -> dict[str, np.ndarray]:
    """The costliest batch any setting timed: the largest batch size at its longest length."""
    size = max(s.batch_size for s in settings)
    batches = [b for s in settings if s.batch_size == size
               for b in make_batches(tokenizer, dataset.texts, dataset.pairs, s, length, seed)]
    return max(batches, key=lambda b: b["input_ids"].size)


def assemble(variants: list[dict], settings: list[Setting], config: BenchConfig, threads: int, dataset) -> dict:
    from bertc.environment import environment

    base = variants[0]
    base_latency = {(row["batch_size"], row["seq_len"]): row for row in base["latency"]}
    for v in variants:
        for row in v["latency"]:
            row.update(speedup(row, base_latency[(row["batch_size"], row["seq_len"])]))
        v["vs_baseline"] = compare(v, base)
        v.pop("_manifest", None)
    env = environment(threads)
    env["device"] = config.device
    env["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    env["ort_spinning"] = False
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return to_jsonable({
        "format": RESULTS_FORMAT, "format_version": RESULTS_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config, "environment": env,
        "data": {"source": dataset.source, "samples": len(dataset)},
        "baseline": base["name"],
        "settings": [{"batch_size": s.batch_size, "seq_len": s.seq_len} for s in settings],
        "variants": variants,
    })


def compare(variant: dict, base: dict) -> dict:
    def ratio(a, b):
        return a / b if a and b else None

    out = {"size_ratio": ratio(base["size_bytes"], variant["size_bytes"]),
           "parameters_ratio": ratio(base["num_parameters"], variant["num_parameters"])}
    if variant.get("accuracy") is not None and base.get("accuracy") is not None:
        out["accuracy_delta_points"] = 100 * (variant["accuracy"] - base["accuracy"])
        out["macro_f1_delta_points"] = 100 * (variant["macro_f1"] - base["macro_f1"])
    if variant.get("memory") and base.get("memory"):
        out["model_memory_ratio"] = ratio(base["memory"]["model_rss_bytes"], variant["memory"]["model_rss_bytes"])
    return out


def read_results(path: Path | str) -> dict:
    """A results file written by `bertc bench`; fails on anything else or on another format version."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"results file {path} does not exist; pass a JSON file written by `bertc bench`")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BertcError(f"{path} is not valid JSON ({err}); pass a file written by `bertc bench`") from err
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise BertcError(f"{path} is not a bertc bench results file; pass a JSON file written by `bertc bench`")
    if results.get("format_version") != RESULTS_VERSION:
        raise BertcError(f"{path} has results format version {results.get('format_version')!r}; this bertc reads "
                         f"version {RESULTS_VERSION}. Re-run `bertc bench` with this bertc version")
    return results


# ---------------------------------------------------------------------------------------------- standard recipe

def standard_recipe_functions():
    """bertc's ONNX export and quantize stages, which the standard-recipe comparison runs."""
    try:
        from bertc.export.config import ExportConfig, QuantizeConfig
        from bertc.export.onnx import export
        from bertc.export.quantize import quantize
    except ImportError as err:
        raise BertcError("--standard-recipe needs bertc's export module (bertc.export.onnx and bertc.export."
                         "quantize), which this installation lacks; run without --standard-recipe") from err
    return export, ExportConfig, quantize, QuantizeConfig


def unpruned_parent(variant: dict) -> Path:
    """The last fine-tuned PyTorch artifact in the variant's lineage before any pruning or distillation."""
    found = None
    for step in variant["lineage"]:  # oldest first; the variant itself is the last step
        if step.get("stage") in ("prune", "distill"):
            break
        path = Path(step.get("path") or "")
        if step.get("stage") == "finetune" and is_artifact(path):
            if read_manifest(path).get("model", {}).get("kind", "pytorch") == "pytorch":
                found = path
    if found is None:
        raise BertcError(f"--standard-recipe needs the fine-tuned model that {variant['path']} comes from, but its "
                         "lineage has no unpruned fine-tuned PyTorch artifact that still exists; run without "
                         "--standard-recipe")
    return found


def standard_recipe_variants(variants: list[dict], tmp: Path, config: BenchConfig) -> list[dict]:
    """What a user gets without bertc's compression: the fine-tuned model in PyTorch eager and as ORT int8.

    The int8 model is bertc's own export (ORT transformer optimizer, fused) and dynamic quantization with
    default options, verified on the bench data; it is deleted after the run.
    """
    export, ExportConfig, quantize, QuantizeConfig = standard_recipe_functions()
    parent = unpruned_parent(variants[0])
    onnx_dir, int8_dir = tmp / "standard-onnx-fp32", tmp / "standard-ort-int8"
    export(parent, ExportConfig(data=config.data, split=config.split), onnx_dir)
    quantize(onnx_dir, QuantizeConfig(eval_data=config.data, split=config.split), int8_dir)
    int8 = describe_variant(int8_dir, standard_recipe=True)
    int8.update(name="standard: ort int8", source=str(parent), note="temporary export, deleted after the run")
    if any(Path(v["path"]).resolve() == parent.resolve() for v in variants):
        return [int8]  # the fine-tuned model is already benched as one of the variants
    eager = describe_variant(parent, standard_recipe=True)
    eager["name"] = "standard: pytorch eager"
    return [eager, int8]
