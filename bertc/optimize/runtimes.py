"""The runtimes `bertc optimize` compares, ONNX Runtime and OpenVINO, and the winner at the batch size served.

Every candidate is deployed in both runtimes (:func:`bertc.optimize.stages.openvino_stages` names the OpenVINO
ones) and benched side by side at batch 1 and at ``--serve-batch N``; the winner is the fastest at N within the
accuracy budget. Which runtime wins depends on the machine (OpenVINO's int8 and bf16 kernels use AMX and
AVX512-BF16 where the CPU has them), so the report lists both for every candidate.

OpenVINO is an optional extra: without it, or with ``--target cuda`` (OpenVINO runs on the CPU), only ONNX
Runtime is measured and a one-line note says why. bf16 is built only where the CPU runs it, as OpenVINO reports.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bertc.bench.results import delta_text, row_at, speedup
from bertc.bench.variants import BACKENDS
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.openvino import check_openvino_export
from bertc.formatting import points, ratio
from bertc.inference.openvino import EXTRA
from bertc.optimize.winner import choose

RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "pytorch-eager": "PyTorch"}


@dataclass(frozen=True)
class Runtimes:
    """What this run measures besides ONNX Runtime."""

    openvino: bool  # build and bench OpenVINO deployables of every candidate
    bf16: bool  # also an OpenVINO IR run in bf16 (the CPU has bf16)
    notes: tuple[str, ...] = ()  # why a runtime or precision is not measured, one line each


def openvino_installed() -> bool:
    """Whether the openvino extra (OpenVINO and NNCF) is installed, without importing either."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))


def bf16_problem() -> str | None:
    """Why `bertc export --openvino --inference-precision bf16` cannot run here (None: it can), by the export's
    own check: OpenVINO's CPU plugin reports whether this CPU has bf16 (AVX512-BF16 or AMX)."""
    try:
        check_openvino_export(ExportConfig(openvino=True, inference_precision="bf16"))
    except BertcError as err:
        return str(err).partition("; use --inference-precision")[0]
    return None


def measured_runtimes(target: str) -> Runtimes:
    """The runtimes to measure for ``target``, with a note for each one left out."""
    if target != "cpu":
        return Runtimes(False, False, ("note: OpenVINO was not measured: it runs on the CPU, and --target is "
                                       f"{target}",))
    if not openvino_installed():
        return Runtimes(False, False, ("note: OpenVINO was not measured: the openvino package is missing "
                                       f"({EXTRA} to compare it with ONNX Runtime)",))
    if problem := bf16_problem():
        return Runtimes(True, False, (f"note: OpenVINO bf16 was not measured: {problem}",))
    return Runtimes(True, True)


def runtime_of(variant: dict) -> str:
    """The runtime a benched variant ran in, by the backend bench records (its kind when older results lack it)."""
    backend = variant.get("backend") or BACKENDS.get(variant.get("kind"), "pytorch-eager")
    return RUNTIME_NAMES.get(backend, backend)


# ---------------------------------------------------------------------------------------------- the winner

def choose_at(results: dict, max_accuracy_drop: float, latency_budget_ms: float | None = None,
              serve_batch: int = 1) -> dict:
    """The variant to ship: the fastest at batch ``serve_batch`` (p50 per call with real lengths) within the
    accuracy budget; with a latency budget (p50 at batch 1), the most accurate of those that meet it. At batch 1
    this is :func:`bertc.optimize.winner.choose`, the rule `bertc report` recommends by.

    Every row gets its runtime and its figures at the serve batch: ``serve_p50_ms``, ``serve_throughput`` (rows
    per second), ``serve_round_p50_ms`` and ``serve_speedup`` over the fine-tuned baseline.
    """
    choice = choose(results, max_accuracy_drop, latency_budget_ms)
    setting = {"batch_size": serve_batch, "seq_len": "real"}
    variants = {v["name"]: v for v in results["variants"]}
    base_row = row_at(variants[results["baseline"]], setting)
    for row in choice["rows"]:
        measured = row_at(variants[row["name"]], setting)
        row.update(runtime=runtime_of(variants[row["name"]]), serve_batch=serve_batch,
                   serve_p50_ms=measured["p50_ms"], serve_throughput=measured.get("throughput"),
                   serve_round_p50_ms=measured["round_p50_ms"], serve_speedup=speedup(measured, base_row)["speedup"])
    if serve_batch == 1:
        return choice
    rows = choice["rows"]
    base = next(r for r in rows if r["baseline"])
    eligible = [r for r in rows if not r["baseline"] and r["within_budget"]]
    fits = [r for r in eligible if latency_budget_ms is not None and r["meets_latency"]]
    note = ""
    if fits:
        best = max(fits, key=lambda r: (r["accuracy"] or 0.0, -r["serve_p50_ms"]))
    else:
        best = min(eligible, key=lambda r: r["serve_p50_ms"], default=None)
        if latency_budget_ms is not None:
            note = f" No candidate within the accuracy budget meets the {latency_budget_ms:g} ms latency budget."
    budget = points(max_accuracy_drop)
    if best is None or best["serve_p50_ms"] >= base["serve_p50_ms"]:
        text = (f"Nothing beats the fine-tuned baseline {base['name']} ({base['serve_p50_ms']:.3g} ms p50 at batch "
                f"{serve_batch}) within the {budget} accuracy budget, so bertc ships the baseline.{note}")
        return {**choice, "winner": base, "shipped_baseline": True, "text": text}
    accuracy = ("" if best["accuracy"] is None else
                f", with {100 * best['accuracy']:.2f}% accuracy on the selection slice "
                f"({delta_text(best.get('selection_delta'), -(best['drop_points'] or 0.0))} points; budget {budget})")
    text = (f"Winner at batch {serve_batch}: {best['name']} ({best['runtime']}), {best['serve_p50_ms']:.3g} ms p50 "
            f"per batch ({throughput(best)}) against {base['serve_p50_ms']:.3g} ms for the fine-tuned baseline "
            f"({ratio(best['serve_speedup'])} faster; {best['p50_ms']:.3g} ms at batch 1){accuracy}.{note}")
    return {**choice, "winner": best, "shipped_baseline": False, "text": text}


def throughput(row: dict) -> str:
    rate = row.get("serve_throughput")
    return "rows/s not measured" if rate is None else f"{rate:.0f} rows/s"
