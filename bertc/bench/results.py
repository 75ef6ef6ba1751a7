"""The results file of `bertc bench` (format ``bertc-bench-results``): where it may go, how a speedup is stated in
it, how it is read back (complete, or refused in one line) and looked up (the reference setting, a row).

Version 2 states every speedup as the median of the per-round ratios, with the range of those same ratios.
Version 1 stated the ratio of the overall medians beside the range of the per-round ratios, so a figure could
lie outside its own range; its speedups are recomputed from the per-round medians when it is read.

Each variant's ``correct`` records which rows it got right (a string of 0s and 1s), so an accuracy difference is
stated with its paired bootstrap 95% interval (:func:`accuracy_delta`); results without it state the difference
alone.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bertc.artifact import check_writable
from bertc.errors import BertcError
from bertc.formatting import signed, with_interval
from bertc.metrics import Z95, paired_bootstrap, read_correctness, rows_to_resolve

RESULTS_FORMAT = "bertc-bench-results"
RESULTS_VERSION = 2
READABLE_VERSIONS = (1, RESULTS_VERSION)

SECTIONS = {"created": str, "config": dict, "environment": dict, "data": dict, "baseline": str, "settings": list,
            "variants": list}
CONFIG_NUMBERS = ("warmup", "runs", "rounds")
VARIANT_FIELDS = {"name": str, "path": str, "backend": str, "lineage": list, "latency": list}
ROW_NUMBERS = ("runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput", "throughput_min", "throughput_max",
               "tokens_per_row_mean")
SPEEDUP_KEYS = ("speedup", "speedup_min", "speedup_max")  # None where a round took no time
OPTIONAL_FIELDS = {"accuracy": "number", "macro_f1": "number", "size_bytes": "number", "num_parameters": "number",
                   "memory": "record", "vs_baseline": "record", "correct": "bits"}  # absent or null where not measured
SHOWN_PROBLEMS = 3


def check_results_output(out: Path | str, overwrite: bool) -> Path:
    """``--out`` of `bertc bench`, checked before any model is loaded: a file name in a writable place."""
    out = Path(out)
    if out.is_dir():
        raise BertcError(f"--out {out} is a directory; pass a file name such as results.json")
    if out.exists() and not overwrite:
        raise BertcError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    check_writable(out, "--out")
    return out


def speedup(variant: dict, baseline: dict) -> dict:
    """Baseline over variant, round by round: the median of the per-round ratios and their range.

    One statistic for the figure and its range, so the figure always lies inside it (the ratio of the overall
    medians need not: 3.60x beside per-round ratios of 4.00-6.67x).
    """
    ratios = [b / v for v, b in zip(variant["round_p50_ms"], baseline["round_p50_ms"]) if v > 0]
    if not ratios:
        return dict.fromkeys(SPEEDUP_KEYS)
    return {"speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios)}


def read_results(path: Path | str) -> dict:
    """A results file written by `bertc bench`; fails on anything else, another format version or missing parts."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"results file {path} does not exist; pass a JSON file written by `bertc bench`")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BertcError(f"{path} is not valid JSON ({err}); pass a file written by `bertc bench`") from err
    except OSError as err:
        raise BertcError(f"could not read {path} ({err.strerror or err}); check its permissions") from err
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise BertcError(f"{path} is not a bertc bench results file; pass a JSON file written by `bertc bench`")
    if results.get("format_version") not in READABLE_VERSIONS:
        raise BertcError(f"{path} has results format version {results.get('format_version')!r}; this bertc reads "
                         f"version {RESULTS_VERSION}. Re-run `bertc bench` with this bertc version")
    problems = missing_parts(results)
    if problems:
        more = f" and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise BertcError(f"{path} is incomplete: {'; '.join(problems[:SHOWN_PROBLEMS])}{more}. The file was cut "
                         "short or edited; re-run `bertc bench` to write it again")
    if results["format_version"] == 1:
        restate_speedups(results)
    return results


def restate_speedups(results: dict) -> None:
    """Version 1 -> 2: every speedup as the median of its per-round ratios (see the module docstring)."""
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    base_rows = {(row["batch_size"], row["seq_len"]): row for row in base["latency"]}
    for variant in results["variants"]:
        for row in variant["latency"]:
            if (row["batch_size"], row["seq_len"]) in base_rows:
                row.update(speedup(row, base_rows[(row["batch_size"], row["seq_len"])]))
    results["format_version"] = RESULTS_VERSION


# ---------------------------------------------------------------------------------------------- lookups

def reference_setting(results: dict) -> dict:
    """The setting the recommendation uses: the smallest batch with real lengths, else the first one."""
    settings = results["settings"]
    real = [s for s in settings if s["seq_len"] == "real"]
    return min(real or settings[:1], key=lambda s: s["batch_size"])


def setting_label(setting: dict) -> str:
    seq = "real lengths" if setting["seq_len"] == "real" else f"{setting['seq_len']} tokens"
    return f"batch {setting['batch_size']}, {seq}"


def row_at(variant: dict, setting: dict) -> dict:
    for row in variant["latency"]:
        if row["batch_size"] == setting["batch_size"] and row["seq_len"] == setting["seq_len"]:
            return row
    raise BertcError(f"results for {variant['name']} lack the setting {setting_label(setting)}; "
                     "the file was edited or is damaged, re-run `bertc bench`")


# ---------------------------------------------------------------------------------------------- accuracy

def accuracy_delta(variant: dict, baseline: dict) -> dict | None:
    """``variant``'s accuracy minus ``baseline``'s, in points, on the same rows, with its paired bootstrap 95%
    interval (:func:`bertc.metrics.paired_bootstrap`), from the per-row correctness (``correct``) of both. None
    when either lacks it (results of an older bench, or --no-accuracy) or they were scored on different rows."""
    a, b = baseline.get("correct"), variant.get("correct")
    if not (is_bits(a) and is_bits(b) and a and len(a) == len(b)):
        return None
    return paired_bootstrap(read_correctness(a), read_correctness(b))


def delta_text(delta: dict | None, points: float | None = None) -> str:
    """'-0.20 [-1.1, +0.7]': a difference with its 95% interval; without one, ``points`` alone ('-' if unknown)."""
    return signed(points) if delta is None else with_interval(delta["difference"], delta["low"], delta["high"])


def resolution(delta: dict | None, budget: float) -> dict | None:
    """Whether the rows compared resolve a ``budget``-point accuracy budget: None when they do (the 95% interval
    reaches at most ``budget`` either side) or nothing is known; otherwise the interval's half-width and about how
    many rows would, at the disagreement rate observed."""
    if delta is None or budget <= 0:
        return None
    half_width = Z95 * delta["sd_points"] / math.sqrt(delta["rows"])
    if half_width <= budget:
        return None
    needed = rows_to_resolve(delta["sd_points"], budget)
    scale = 10 ** max(0, len(str(needed)) - 2)  # two significant digits, rounded up
    return {"rows": delta["rows"], "half_width": half_width, "rows_needed": -(-needed // scale) * scale}


def resolution_text(deltas: list[dict | None], budget: float, data: str) -> str | None:
    """One line when ``data`` (the rows compared) cannot resolve the budget for the least resolved of ``deltas``."""
    found = [r for r in (resolution(delta, budget) for delta in deltas) if r is not None]
    if not found:
        return None
    worst = max(found, key=lambda r: r["half_width"])
    return (f"{data} ({worst['rows']:,} rows) cannot resolve a {budget:g}-point budget: the 95% interval is "
            f"±{worst['half_width']:.2f} points; about {worst['rows_needed']:,} rows would")


# ---------------------------------------------------------------------------------------------- completeness

def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_record(value) -> bool:
    return isinstance(value, dict)


def is_bits(value) -> bool:
    return isinstance(value, str) and set(value) <= {"0", "1"}


KINDS = {"number": (is_number, "number"), "record": (is_record, "record"), "bits": (is_bits, "string of 0s and 1s")}


def is_setting(batch_size, seq_len) -> bool:
    return is_number(batch_size) and (seq_len == "real" or is_number(seq_len))


def missing_parts(results: dict) -> list[str]:
    """What `bertc report` and `bertc optimize` read but the results lack, in words ('no variants', ...)."""
    problems = [f"no '{key}'" for key, kind in SECTIONS.items() if not isinstance(results.get(key), kind)]
    config, data = results.get("config"), results.get("data")
    if isinstance(config, dict):
        problems += [f"config has no '{key}'" for key in CONFIG_NUMBERS if not is_number(config.get(key))]
    if isinstance(data, dict) and not (isinstance(data.get("source"), str) and is_number(data.get("samples"))):
        problems.append("data has no 'source' or 'samples'")
    gpu = results["environment"].get("gpu") if isinstance(results.get("environment"), dict) else None
    if gpu is not None and not (is_record(gpu) and isinstance(gpu.get("name"), str)):
        problems.append("the environment's 'gpu' has no 'name'")
    settings = results.get("settings") if isinstance(results.get("settings"), list) else []
    if isinstance(results.get("settings"), list) and not settings:
        problems.append("no settings")
    if not all(isinstance(s, dict) and is_setting(s.get("batch_size"), s.get("seq_len")) for s in settings):
        problems.append("a setting without 'batch_size' or 'seq_len'")
        settings = []
    variants = results.get("variants") if isinstance(results.get("variants"), list) else []
    if isinstance(results.get("variants"), list) and not variants:
        problems.append("no variants")
    for number, variant in enumerate(variants, 1):
        problems += variant_problems(variant, number, settings)
    names = [v.get("name") for v in variants if isinstance(v, dict)]
    if variants and isinstance(results.get("baseline"), str) and results["baseline"] not in names:
        problems.append(f"the baseline '{results['baseline']}' is not among the variants")
    return problems


def variant_problems(variant, number: int, settings: list[dict]) -> list[str]:
    if not isinstance(variant, dict):
        return [f"variant {number} is not a record"]
    who = f"variant '{variant['name']}'" if isinstance(variant.get("name"), str) else f"variant {number}"
    problems = [f"{who} has no '{key}'" for key, kind in VARIANT_FIELDS.items() if not isinstance(variant.get(key),
                                                                                                   kind)]
    problems += [f"{who} has a '{key}' that is not a {KINDS[kind][1]}" for key, kind in OPTIONAL_FIELDS.items()
                 if variant.get(key) is not None and not KINDS[kind][0](variant[key])]
    rows = variant.get("latency") if isinstance(variant.get("latency"), list) else []
    lineage = variant.get("lineage") if isinstance(variant.get("lineage"), list) else []
    if not all(is_record(step) for step in lineage):
        problems.append(f"{who} has a lineage step that is not a record")
    by_setting = {(row["batch_size"], row["seq_len"]): row for row in rows
                  if isinstance(row, dict) and is_setting(row.get("batch_size"), row.get("seq_len"))}
    for setting in settings:
        where = setting_label(setting)
        row = by_setting.get((setting["batch_size"], setting["seq_len"]))
        if row is None:
            if isinstance(variant.get("latency"), list):
                problems.append(f"{who} has no latency at {where}")
            continue
        lacking = [key for key in ROW_NUMBERS if not is_number(row.get(key))]
        lacking += [key for key in SPEEDUP_KEYS if key not in row or not (row[key] is None or is_number(row[key]))]
        rounds = row.get("round_p50_ms")
        if not isinstance(rounds, list) or not rounds or not all(is_number(x) for x in rounds):
            lacking.append("round_p50_ms")
        if lacking:
            problems.append(f"{who} at {where} has no {', '.join(repr(key) for key in lacking)}")
    return problems
