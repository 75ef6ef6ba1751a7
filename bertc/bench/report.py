"""`bertc report`: bench results as a report a person can read, and the variant to ship.

Writes ``report.md`` (figures beside it in ``figures/``) and a self-contained ``report.html`` (figures embedded
as base64 PNG). Each results file gets its own section, since latencies from different machines or devices
are not comparable: a recommendation, the table at the reference setting (batch 1 with real lengths when it
was measured), the latency of every setting, an accuracy-versus-latency scatter with its Pareto front, latency
and throughput by batch size, the lineage of each variant and the environment.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from rich.table import Table

from bertc.artifact import check_output, staging_dir
from bertc.bench.figures import figures
from bertc.bench.results import (
    accuracy_delta,
    delta_text,
    read_results,
    reference_setting,
    resolution_text,
    row_at,
    setting_label,
)
from bertc.errors import BertcError
from bertc.formatting import megabytes, pct, signed
from bertc.formatting import points as points_text


def report(results_files: list[Path | str], out_dir: Path | str, max_accuracy_drop: float = 1.0, *,
           latency_budget_ms: float | None = None, overwrite: bool = False) -> Path:
    """Write report.md, report.html and figures/ for one or more results files into ``out_dir``."""
    if not math.isfinite(max_accuracy_drop) or max_accuracy_drop < 0:
        raise BertcError(f"--max-accuracy-drop must be at least 0 (points of accuracy), got {max_accuracy_drop}")
    if not results_files:
        raise BertcError("no results files given; pass one or more JSON files written by `bertc bench`")
    results = [read_results(path) for path in results_files]
    out_dir = check_output(out_dir, overwrite)
    sections = [section(r, Path(p).name, max_accuracy_drop, i + 1, latency_budget_ms)
                for i, (r, p) in enumerate(zip(results, results_files))]
    with staging_dir(out_dir, overwrite) as tmp:
        (tmp / "figures").mkdir()
        for s in sections:
            for name, png in s["figures"].items():
                (tmp / "figures" / name).write_bytes(png)
        (tmp / "report.md").write_text(to_markdown(sections, max_accuracy_drop))
        (tmp / "report.html").write_text(to_html(sections, max_accuracy_drop))
    return out_dir


# ---------------------------------------------------------------------------------------------- content

def within_budget(results: dict, variant: dict, max_accuracy_drop: float) -> bool:
    """Accuracy at most ``max_accuracy_drop`` points below the baseline's (always, when it was not measured)."""
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    if base.get("accuracy") is None:
        return True
    return variant.get("accuracy") is not None and \
        100 * (base["accuracy"] - variant["accuracy"]) <= max_accuracy_drop + 1e-9


def pick(results: dict, max_accuracy_drop: float, latency_budget_ms: float | None = None) -> tuple[dict | None, str]:
    """The variant to ship at the reference setting, and a note; None when nothing within the budgets beats the
    baseline. The rule `bertc report` recommends by and `bertc optimize` ships by: the fastest variant within the
    accuracy budget; with a latency budget, the most accurate of those that meet it (the fastest when none does).
    """
    setting = reference_setting(results)
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    p50 = {v["name"]: row_at(v, setting)["p50_ms"] for v in results["variants"]}
    eligible = [v for v in results["variants"] if v is not base and within_budget(results, v, max_accuracy_drop)]
    fits = [v for v in eligible if latency_budget_ms is not None and p50[v["name"]] <= latency_budget_ms]
    note = ""
    if fits:
        best = max(fits, key=lambda v: (v.get("accuracy") or 0.0, -p50[v["name"]]))
    else:
        best = min(eligible, key=lambda v: p50[v["name"]], default=None)
        if latency_budget_ms is not None:
            note = f" No candidate within the accuracy budget meets the {latency_budget_ms:g} ms latency budget."
    if best is None or p50[best["name"]] >= p50[base["name"]]:
        return None, note
    return best, note


def recommend(results: dict, max_accuracy_drop: float, latency_budget_ms: float | None = None) -> dict:
    """The variant :func:`pick` chooses, in plain words."""
    setting = reference_setting(results)
    where = setting_label(setting)
    variants = results["variants"]
    base = next(v for v in variants if v["name"] == results["baseline"])
    p50 = {v["name"]: row_at(v, setting)["p50_ms"] for v in variants}
    measured = base.get("accuracy") is not None
    budget = f"the {points_text(max_accuracy_drop)} accuracy budget"

    def drop(v):
        return 100 * (base["accuracy"] - v["accuracy"]) if measured and v.get("accuracy") is not None else None

    best, note = pick(results, max_accuracy_drop, latency_budget_ms)
    fastest = p50[best["name"]] if best else p50[base["name"]]
    over = [v for v in variants if not within_budget(results, v, max_accuracy_drop) and p50[v["name"]] < fastest]
    over_text = (" Faster but over the budget: " + ", ".join(
        f"{v['name']} ({num(p50[v['name']])} ms, {delta_text(accuracy_delta(v, base), -drop(v))} points)"
        for v in over) + ".") if over else ""
    if best is None:
        text = (f"No variant beats the baseline {base['name']} ({num(p50[base['name']])} ms p50 at {where})"
                + (f" within {budget}." if measured else ".") + note + over_text)
        return {"choice": None, "setting": setting, "text": text}
    row = row_at(best, setting)
    if measured:
        difference = delta_text(accuracy_delta(best, base), -drop(best))
        accuracy = (f"Its accuracy is {100 * best['accuracy']:.2f}% ({difference} points against the baseline, "
                    f"within {budget}).")
    else:
        accuracy = "Accuracy was not measured (--no-accuracy), so the budget was not checked."
    text = (f"Ship {best['name']}: at {where}, it takes {num(p50[best['name']])} ms (p50) against "
            f"{num(p50[base['name']])} ms for the baseline {base['name']}, {row['speedup']:.2f}x faster "
            f"(median of the per-round ratios, range {row['speedup_min']:.2f}-{row['speedup_max']:.2f}x). {accuracy}")
    size = best.get("vs_baseline", {}).get("size_ratio")
    if size and abs(size - 1) < 0.03:
        text += f" Its size on disk is about the baseline's ({megabytes(best['size_bytes'])} MB)."
    elif size:
        factor, how = (size, "smaller") if size >= 1 else (1 / size, "larger")
        text += f" It is {factor:.2f}x {how} on disk ({megabytes(best['size_bytes'])} MB)."
    if row["speedup_min"] is not None and row["speedup_min"] <= 1:
        text += (" Some rounds measured it no faster than the baseline, so the gain is within this run's noise; "
                 "re-run with more --runs before relying on it.")
    text += note + over_text + standard_recipe_text(results, best, setting, p50)
    return {"choice": best["name"], "setting": setting, "text": text}


def standard_recipe_text(results: dict, best: dict, setting: dict, p50: dict) -> str:
    standard = [v for v in results["variants"] if v.get("standard_recipe") and v is not best]
    if not standard:
        return ""
    fastest = min(standard, key=lambda v: p50[v["name"]])
    ratio = p50[fastest["name"]] / p50[best["name"]]
    accuracy = ""
    if best.get("accuracy") is not None and fastest.get("accuracy") is not None:
        difference = 100 * (best["accuracy"] - fastest["accuracy"])
        accuracy = f", {delta_text(accuracy_delta(best, fastest), difference)} points of accuracy"
    return (f" Against the standard recipe's fastest, {fastest['name']} ({num(p50[fastest['name']])} ms), it is "
            f"{ratio:.2f}x {'faster' if ratio >= 1 else 'as fast'}{accuracy}.")


def num(value: float) -> str:
    """Three significant digits, without exponents: 0.0846, 23.4, 148, 1,106."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def ms(row: dict) -> str:
    low, high = min(row["round_p50_ms"]), max(row["round_p50_ms"])
    return f"{num(row['p50_ms'])} ({num(low)}-{num(high)})"


def ratio_text(row: dict, baseline: bool = False) -> str:
    if baseline:
        return "baseline"
    if row.get("speedup") is None:
        return "-"
    return f"{row['speedup']:.2f}x ({row['speedup_min']:.2f}-{row['speedup_max']:.2f}), {speed_verdict(row)}"


def speed_verdict(row: dict) -> str:
    """Faster or slower only when every round says so (the per-round range excludes 1)."""
    if row.get("speedup_min") is None or row.get("speedup_max") is None:
        return "range not measured"
    if row["speedup_min"] > 1:
        return "faster"
    if row["speedup_max"] < 1:
        return "slower"
    return "not measurably faster"


def summary_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Every variant at the reference setting: speed, accuracy, size, memory."""
    setting = reference_setting(results)
    headers = ["variant", "backend", "p50 ms (round range)", "p90 ms", "p99 ms", "samples/s", "speedup vs baseline",
               "accuracy %", "Δ points (95% CI)", "macro-F1 %", "size MB", "parameters", "peak RSS MB", "model RSS MB"]
    rows = []
    for v in results["variants"]:
        row, memory = row_at(v, setting), v.get("memory") or {}
        rows.append([v["name"] + (" (baseline)" if v["name"] == results["baseline"] else ""),
                     v["backend"] + (f" {v['variant']}" if v.get("variant") else ""),
                     ms(row), num(row["p90_ms"]), num(row["p99_ms"]), num(row["throughput"]),
                     ratio_text(row, v["name"] == results["baseline"]), pct(v.get("accuracy")), delta_cell(results, v),
                     pct(v.get("macro_f1")), megabytes(v.get("size_bytes")),
                     f"{v['num_parameters']:,}" if v.get("num_parameters") else "-",
                     megabytes(memory.get("peak_rss_bytes")), megabytes(memory.get("model_rss_bytes"))])
    return headers, rows


def delta_cell(results: dict, variant: dict) -> str:
    """The variant's accuracy against the baseline's, in points, with its 95% interval (the baseline: +0.00)."""
    points = variant.get("vs_baseline", {}).get("accuracy_delta_points")
    if variant["name"] == results["baseline"]:
        return signed(points)
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    return delta_text(accuracy_delta(variant, base), points)


def resolution_note(results: dict, max_accuracy_drop: float, latency_budget_ms: float | None = None) -> str | None:
    """Whether the bench data resolve the accuracy budget, for the variant recommended (else every variant)."""
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    best, _ = pick(results, max_accuracy_drop, latency_budget_ms)
    compared = [best] if best is not None else [v for v in results["variants"] if v is not base]
    text = resolution_text([accuracy_delta(v, base) for v in compared], max_accuracy_drop, "the bench data")
    return None if text is None else f"{text[0].upper()}{text[1:]}."


def latency_table(results: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["variant", "setting", "mean tokens/row", "p50 ms (round range)", "p90 ms", "p99 ms", "mean ms",
               "samples/s (round range)", "speedup vs baseline", "timed calls"]
    rows = []
    for setting in results["settings"]:
        for v in results["variants"]:
            row = row_at(v, setting)
            rows.append([v["name"], setting_label(setting), f"{row['tokens_per_row_mean']:.1f}", ms(row),
                         num(row["p90_ms"]), num(row["p99_ms"]), num(row["mean_ms"]),
                         f"{num(row['throughput'])} ({num(row['throughput_min'])}-{num(row['throughput_max'])})",
                         ratio_text(row, v["name"] == results["baseline"]), str(row["runs"])])
    return headers, rows


def lineage_lines(variant: dict) -> list[str]:
    return [f"{step.get('stage') or 'source'}: {step.get('path')}" + (f" ({step['summary']})" if step.get("summary")
                                                                     else "") for step in variant["lineage"]]


def environment_rows(results: dict) -> list[tuple[str, str]]:
    env, config = results["environment"], results["config"]
    gpu = env.get("gpu")
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    timing = (f"warmup {config['warmup']}, " + (f"{config['duration']} s" if config.get("duration")
                                                else f"{config['runs']} calls") + f" per variant and setting in "
              f"{config['rounds']} interleaved rounds")
    return [("measured", results["created"]), ("device", env.get("device", "cpu")), ("CPU", env.get("cpu", "?")),
            ("CPU features", ", ".join(env.get("cpu_flags", [])) or "-"), ("cores", str(env.get("cores"))),
            ("threads", str(env.get("threads"))),
            ("GPU", f"{gpu['name']} (driver {gpu.get('driver')}, CUDA {gpu.get('cuda')})" if gpu else "none"),
            ("packages", packages), ("bertc commit", str(env.get("bertc_commit"))),
            ("python", f"{env.get('python')} on {env.get('platform')}"),
            ("data", f"{results['data']['source']} ({results['data']['samples']} rows)"), ("timing", timing),
            ("cores used by other processes", ", ".join(f"{k} {v}" for k, v in (env.get("other_load") or {}).items())
             or ", ".join(f"load average {k} {v}" for k, v in (env.get("load_average") or {}).items()))]


def section(results: dict, source: str, max_accuracy_drop: float, number: int,
            latency_budget_ms: float | None = None) -> dict:
    env = results["environment"]
    hardware = env["gpu"]["name"] if env.get("device") == "cuda" and env.get("gpu") else env.get("cpu", "?")
    return {"title": f"{source}: {env.get('device', 'cpu')}, {hardware}",
            "recommendation": recommend(results, max_accuracy_drop, latency_budget_ms)["text"],
            "notes": notes(results) + [note for note in [resolution_note(results, max_accuracy_drop,
                                                                         latency_budget_ms)] if note],
            "reference": setting_label(reference_setting(results)),
            "summary": summary_table(results), "latency": latency_table(results),
            "lineage": {v["name"]: lineage_lines(v) for v in results["variants"]},
            "environment": environment_rows(results),
            "figures": figures(results, max_accuracy_drop, number)}


def notes(results: dict) -> list[str]:
    """Caveats a reader must see next to the recommendation."""
    out = []
    env = results["environment"]
    others = [x for x in (env.get("other_load") or {}).values() if x is not None]
    load = [x for x in (env.get("load_average") or {}).values() if x is not None]  # results files before 2026-11-25
    if others and max(others) > 0.25 * (env.get("cores") or 1):
        out.append(f"The machine was busy while measuring (other processes used up to {max(others):.1f} of "
                   f"{env.get('cores')} cores): timings are noisy. Re-run on an idle machine before quoting them.")
    elif not others and load and max(load) > 0.5 * (env.get("cores") or 1):
        out.append(f"The machine was busy while measuring (1-minute load average up to {max(load):.1f} on "
                   f"{env.get('cores')} cores): timings are noisy. Re-run on an idle machine before quoting them.")
    return out


# ---------------------------------------------------------------------------------------------- writers

HOW_MEASURED = ("Latency is the time of one model call on an already tokenised batch; ranges are the spread of "
                "per-round medians of interleaved rounds. A speedup is the median of the per-round ratios to the "
                "baseline, and its range the spread of those same ratios. An accuracy difference is followed by its "
                "paired bootstrap 95% interval in brackets (rows resampled together, from each model's per-row "
                "correctness).")

def to_markdown(sections: list[dict], max_accuracy_drop: float) -> str:
    def table(headers, rows):
        escape = [[str(c).replace("|", "\\|") for c in r] for r in [headers, *rows]]
        lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in escape[1:]])

    parts = ["# bertc benchmark report", "",
             f"Accuracy budget: at most {points_text(max_accuracy_drop)} below the baseline. {HOW_MEASURED}", ""]
    for s in sections:
        parts += [f"## {s['title']}", "", "### Recommendation", "", s["recommendation"], ""]
        parts += [f"> Note: {note}\n" for note in s["notes"]]
        parts += [f"### Variants at {s['reference']}", "", table(*s["summary"]), ""]
        parts += [f"![{name}](figures/{name})" for name in s["figures"]] + [""]
        parts += ["### Latency of every setting", "", table(*s["latency"]), "", "### Lineage", ""]
        for name, lines in s["lineage"].items():
            parts += [f"**{name}**", ""] + [f"{i + 1}. {line}" for i, line in enumerate(lines)] + [""]
        parts += ["### Environment", "", table(["item", "value"], [list(r) for r in s["environment"]]), ""]
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.recommendation{background:#f6f6ee;border-left:4px solid #888;padding:0.8em 1em}img{max-width:100%;
display:block;margin:1em 0}ol{font-size:14px}.note{color:#8a4b00}table.kv td{text-align:left}"""


def to_html(sections: list[dict], max_accuracy_drop: float) -> str:
    e = html.escape

    def table(headers, rows):
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>bertc benchmark report</title>",
             f"<style>{CSS}</style></head><body><h1>bertc benchmark report</h1>",
             f"<p>Accuracy budget: at most {points_text(max_accuracy_drop)} below the baseline. {HOW_MEASURED}</p>"]
    for s in sections:
        parts += [f"<h2>{e(s['title'])}</h2><h3>Recommendation</h3>",
                  f"<p class='recommendation'>{e(s['recommendation'])}</p>",
                  *[f"<p class='note'>Note: {e(note)}</p>" for note in s["notes"]],
                  f"<h3>Variants at {e(s['reference'])}</h3>", table(*s["summary"])]
        for name, data in s["figures"].items():
            parts.append(f"<img alt='{e(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
        parts += ["<h3>Latency of every setting</h3>", table(*s["latency"]), "<h3>Lineage</h3>"]
        for name, lines in s["lineage"].items():
            parts.append(f"<p><b>{e(name)}</b></p><ol>" + "".join(f"<li>{e(x)}</li>" for x in lines) + "</ol>")
        parts += ["<h3>Environment</h3>", table(["item", "value"], s["environment"]).replace("<table>",
                                                                                             "<table class='kv'>")]
    return "\n".join(parts + ["</body></html>"]) + "\n"


def console_tables(results: dict) -> list:
    """Compact tables for the terminal (what `bertc bench` prints at the end); the report has every column."""
    setting = reference_setting(results)
    summary = Table("variant", "backend", "p50 ms", "p99 ms", "samples/s", "speedup", "acc %", "Δ (95% CI)", "MB",
                    "RSS MB", title=f"variants at {setting_label(setting)} (ranges: per-round "
                    "medians; speedup: median of per-round ratios)")
    for v in results["variants"]:
        row = row_at(v, setting)
        summary.add_row(v["name"], v["backend"] + (f" {v['variant']}" if v.get("variant") else ""), ms(row),
                        num(row["p99_ms"]), num(row["throughput"]),
                        ratio_text(row, v["name"] == results["baseline"]), pct(v.get("accuracy")),
                        delta_cell(results, v), megabytes(v.get("size_bytes")),
                        megabytes((v.get("memory") or {}).get("model_rss_bytes")))
    settings = Table("variant", "setting", "p50 ms", "p99 ms", "samples/s", "speedup", title="every setting")
    for s in results["settings"]:
        for v in results["variants"]:
            row = row_at(v, s)
            settings.add_row(v["name"], setting_label(s), ms(row), num(row["p99_ms"]), num(row["throughput"]),
                             ratio_text(row, v["name"] == results["baseline"]))
    return [summary, settings]
