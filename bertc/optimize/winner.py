"""The winner of `bertc optimize`: which benched variant to ship, by the rule `bertc report` recommends by."""

from __future__ import annotations

from bertc.bench.report import pick, within_budget
from bertc.bench.results import accuracy_delta, delta_text, reference_setting, row_at, speedup


def choose(results: dict, max_accuracy_drop: float, latency_budget_ms: float | None = None) -> dict:
    """The variant to ship from bench results measured on the selection slice, by the rule `bertc report`
    recommends by (:func:`bertc.bench.report.pick`): the fastest within the accuracy budget (p50 at batch 1 with
    real lengths), or with a latency budget the most accurate that meets it; the baseline when none beats it."""
    setting = reference_setting(results)
    base = next(v for v in results["variants"] if v["name"] == results["baseline"])
    rows = []
    for v in results["variants"]:
        drop = None
        if v.get("accuracy") is not None and base.get("accuracy") is not None:
            drop = 100 * (base["accuracy"] - v["accuracy"])
        measured = row_at(v, setting)
        p50 = measured["p50_ms"]
        # the speedup bench reports (median of per-round ratios), so the summary and the report agree
        rows.append({"name": v["name"], "path": v["path"], "p50_ms": p50, "accuracy": v.get("accuracy"),
                     "drop_points": drop, "selection_delta": None if v is base else accuracy_delta(v, base),
                     "speedup": speedup(measured, row_at(base, setting))["speedup"],
                     "round_p50_ms": measured["round_p50_ms"],
                     "within_budget": within_budget(results, v, max_accuracy_drop),
                     "meets_latency": latency_budget_ms is None or p50 <= latency_budget_ms,
                     "baseline": v is base})
    base_row = next(r for r in rows if r["baseline"])
    best, note = pick(results, max_accuracy_drop, latency_budget_ms)
    budget = f"{max_accuracy_drop:g} point" + ("" if max_accuracy_drop == 1 else "s")
    if best is None:
        text = (f"Nothing beats the fine-tuned baseline {base_row['name']} ({base_row['p50_ms']:.3g} ms p50) within "
                f"the {budget} accuracy budget, so bertc ships the baseline.{note}")
        return {"winner": base_row, "shipped_baseline": True, "text": text, "rows": rows, "setting": setting}
    winner = next(r for r in rows if r["name"] == best["name"])
    text = (f"Winner: {winner['name']}, {winner['p50_ms']:.3g} ms p50 at batch 1 against {base_row['p50_ms']:.3g} ms "
            f"for the fine-tuned baseline ({winner['speedup']:.2f}x faster), with {100 * winner['accuracy']:.2f}% "
            f"accuracy on the selection slice ({delta_text(winner['selection_delta'], -winner['drop_points'])} points; "
            f"budget {budget}).{note}")
    return {"winner": winner, "shipped_baseline": False, "text": text, "rows": rows, "setting": setting}
