"""Results dicts built in the tests, shaped as `bertc bench` writes them."""

from __future__ import annotations

from bertc.bench.latency import summarize
from bertc.bench.results import RESULTS_FORMAT, RESULTS_VERSION, speedup


def synthetic_results(variants: list[tuple[str, float, float | None]], baseline: str | None = None) -> dict:
    """A results dict with (name, p50 ms at batch 1, accuracy) per variant; round medians +-5%."""
    def row(p50):
        return {"batch_size": 1, "seq_len": "real", "p50_ms": p50, "p90_ms": p50 * 1.2, "p99_ms": p50 * 1.5,
                "mean_ms": p50, "round_p50_ms": [p50 * 0.95, p50 * 1.05], "throughput": 1000 / p50,
                "throughput_min": 900 / p50, "throughput_max": 1100 / p50, "tokens_per_row_mean": 10.0,
                "padded_length_mean": 10.0, "runs": 20}

    base_p50 = variants[0][1]
    records = []
    for name, p50, accuracy in variants:
        latency = row(p50)
        latency.update(speedup=base_p50 / p50, speedup_min=base_p50 * 0.95 / (p50 * 1.05),
                       speedup_max=base_p50 * 1.05 / (p50 * 0.95))
        records.append({"name": name, "backend": "onnxruntime", "path": f"/runs/{name}", "kind": "onnx",
                        "accuracy": accuracy, "macro_f1": accuracy, "size_bytes": 2**20, "num_parameters": 1000,
                        "lineage": [{"stage": "finetune", "path": "/runs/ft"}], "latency": [latency],
                        "vs_baseline": {"size_ratio": 1.0}})
    return {"format": RESULTS_FORMAT, "format_version": RESULTS_VERSION, "created": "now",
            "baseline": baseline or variants[0][0], "settings": [{"batch_size": 1, "seq_len": "real"}],
            "variants": records, "config": {"warmup": 1, "runs": 20, "rounds": 2},
            "environment": {"device": "cpu", "cpu": "test cpu", "threads": 2, "packages": {}},
            "data": {"source": "test.tsv", "samples": 100}}


# Per-call milliseconds of two interleaved rounds where the ratio of the overall medians (9 / 2.5 = 3.6x) lies
# outside the per-round ratios (20 / 3 = 6.67x and 8 / 2 = 4x): the case the speedup statistic must get right.
MISLEADING_ROUNDS = {"base": [[20.0, 20.0, 10.0], [8.0, 8.0, 1.0]], "fast": [[5.0, 2.0, 3.0], [1.0, 2.0, 8.0]]}


def measured_results(rounds: dict[str, list[list[float]]], accuracy: float = 0.9) -> dict:
    """Results whose rows are summarised from per-call milliseconds (variant name -> rounds) and compared with the
    first variant the way `bertc bench` does."""
    rows = {name: {"batch_size": 1, "seq_len": "real", "tokens_per_row_mean": 10.0, **summarize(calls, 1)}
            for name, calls in rounds.items()}
    base = rows[next(iter(rounds))]
    results = synthetic_results([(name, row["p50_ms"], accuracy) for name, row in rows.items()])
    for variant in results["variants"]:
        row = rows[variant["name"]]
        variant["latency"] = [{**row, **speedup(row, base)}]
    return results
