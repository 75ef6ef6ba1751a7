"""`bertc bench`: latency, throughput, memory, size and accuracy of every variant of a model, side by side.

Every figure lands in one results JSON (format ``bertc-bench-results``, version ``RESULTS_VERSION``) with the
environment it was measured in; ``bertc report`` turns one or more of them into a report. How latency and
memory are measured is described in ``bertc.bench.latency`` and ``bertc.bench.memory``.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bertc.artifact import load_tokenizer
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
    summarize,
)
from bertc.bench.machine import choose_threads, cores_used_by_others, cpu_counters, other_load
from bertc.bench.memory import peak_memory
from bertc.bench.results import RESULTS_FORMAT, RESULTS_VERSION, accuracy_delta, check_results_output, speedup
from bertc.bench.standard import standard_recipe_variants, unpruned_parent
from bertc.bench.variants import KINDS, describe_variants
from bertc.console import console
from bertc.data.config import Columns
from bertc.data.labels import check_known_labels
from bertc.data.prepare import read_eval_data
from bertc.environment import environment
from bertc.errors import BertcError
from bertc.inference.evaluation import score_dataset
from bertc.inference.onnx import SPIN_WITHIN_RUNS, OnnxPredictor
from bertc.inference.openvino import KIND as OPENVINO
from bertc.inference.openvino import OpenVinoPredictor
from bertc.inference.registry import load_predictor
from bertc.jsonio import to_jsonable, write_json


def bench(artifacts: list[Path | str], config: BenchConfig, out: Path | str, *, overwrite: bool = False) -> dict:
    """Measure every artifact on the same data and machine; write and return the results dict."""
    out = check_results_output(out, overwrite)
    variants = describe_variants(artifacts, config.baseline)
    check_variants(variants, config)
    dataset = read_data(config, variants)
    threads, threading = choose_threads(config.threads)
    before = other_load(warn=True)
    started = cpu_counters()
    with tempfile.TemporaryDirectory(prefix="bertc-standard-") if config.standard_recipe else nullcontext() as tmp:
        if tmp:
            variants += standard_recipe_variants(variants, Path(tmp), config)
        settings = [Setting(b, s) for s in config.seq_lens for b in sorted(set(config.batch_sizes))]
        measure_all(variants, dataset, settings, config, threads)
    results = assemble(variants, settings, config, threads, dataset)
    results["environment"].update(threading)
    results["environment"]["other_load"] = {"before": before, "during": cores_used_by_others(started, cpu_counters())}
    write_json(out, results)
    return results


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
        unpruned_parent(variants[0])


def read_data(config: BenchConfig, variants: list[dict]):
    task = variants[0]["_manifest"].get("task", {})
    if config.text_pair_column and not task.get("text_pair_column"):
        raise BertcError(f"--text-pair-column {config.text_pair_column}: {variants[0]['path']} was trained on "
                         "single texts and does not know a second text column; drop the option")
    columns = Columns(config.text_column or task.get("text_column"),
                      config.text_pair_column or task.get("text_pair_column"),
                      config.label_column or task.get("label_column"))
    dataset, _ = read_eval_data(config.data, columns, split=config.split, max_samples=config.max_samples)
    check_known_labels(dataset.labels, variants[0]["labels"], dataset.source, "Pass data of the same task")
    return dataset


def measure_all(variants: list[dict], dataset, settings: list[Setting], config: BenchConfig, threads: int) -> None:
    """Fill each variant record with accuracy, latency per setting and memory, under one progress display."""
    import torch

    previous_threads = torch.get_num_threads()
    rounds = min(config.rounds, config.runs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            loading = progress.add_task("loading" + (" + accuracy" if config.accuracy else ""), total=len(variants))
            backends, tokenizers = {}, {}
            for v in variants:
                path, manifest = Path(v["path"]), v["_manifest"]
                if v["kind"] in ("onnx", OPENVINO):  # one session: the timing one scores accuracy too
                    backend = open_backend(path, manifest, config.device, threads)
                    task = manifest["task"]
                    args = (load_tokenizer(path), task["labels"], task.get("max_length", 128))
                    if v["kind"] == "onnx":
                        predictor = OnnxPredictor(backend.session, *args)
                    else:
                        predictor = OpenVinoPredictor(backend.compiled, *args)
                        v["openvino"] = backend.properties  # what the plugin really runs with, beside its times
                else:  # the predictor's model is the one timed
                    predictor = load_predictor(path, device=config.device)
                    backend = open_backend(path, manifest, config.device, threads, predictor)
                if config.accuracy:
                    report = score_dataset(predictor, dataset, per_row=True)
                    v.update(accuracy=report["accuracy"], macro_f1=report["macro_f1"], samples=report["samples"],
                             correct=report["correct"])  # per row: accuracy differences get paired intervals
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
    env["ort_spinning"] = "=".join(SPIN_WITHIN_RUNS)  # the entry bertc's sessions (create_session) get
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    if any(v["kind"] == OPENVINO for v in variants):  # environment() does not list the optional extra
        import openvino

        env["openvino_version"] = openvino.__version__
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
        if (delta := accuracy_delta(variant, base)) is not None:  # its paired bootstrap 95% interval
            out["accuracy_delta_low_points"], out["accuracy_delta_high_points"] = delta["low"], delta["high"]
    if variant.get("memory") and base.get("memory"):
        out["model_memory_ratio"] = ratio(base["memory"]["model_rss_bytes"], variant["memory"]["model_rss_bytes"])
    return out
