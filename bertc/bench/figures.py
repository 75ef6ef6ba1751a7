"""The figures of `bertc report`: accuracy versus latency with its Pareto front, and latency and throughput by
batch size, as PNG bytes (matplotlib, imported when drawing)."""

from __future__ import annotations

import io

from bertc.bench.results import reference_setting, row_at, setting_label
from bertc.formatting import points as points_text


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points that no other point beats on both, ordered by latency."""
    def beats(a, b):
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    front = [i for i, p in enumerate(points) if not any(beats(q, p) for q in points)]
    return sorted(front, key=lambda i: points[i][0])


def figures(results: dict, max_accuracy_drop: float, number: int) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    out = {}
    if all(v.get("accuracy") is not None for v in results["variants"]):
        out[f"{number}-accuracy-vs-latency.png"] = scatter(results, max_accuracy_drop)
    out[f"{number}-latency-by-batch-size.png"] = by_batch_size(results)
    return out


def style(results: dict, i: int, v: dict) -> dict:
    marker = "s" if v["name"] == results["baseline"] else ("^" if v.get("standard_recipe") else "o")
    return {"color": f"C{i % 10}", "marker": marker}


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def scatter(results: dict, max_accuracy_drop: float) -> bytes:
    import matplotlib.pyplot as plt

    setting = reference_setting(results)
    variants = results["variants"]
    points = [(row_at(v, setting)["p50_ms"], 100 * v["accuracy"]) for v in variants]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (v, (x, y)) in enumerate(zip(variants, points)):
        row = row_at(v, setting)
        ax.errorbar([x], [y], xerr=[[x - min(row["round_p50_ms"])], [max(row["round_p50_ms"]) - x]],
                    markersize=9, linestyle="none", label=v["name"], **style(results, i, v))
        ax.annotate(v["name"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    front = pareto_front(points)
    ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=320, facecolors="none",
               edgecolors="0.25", linewidths=1.2, label="Pareto front (no variant both faster and more accurate)")
    if len(front) > 1:
        ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="0.35",
                linestyle="--", linewidth=1.2)
    base = next(v for v in variants if v["name"] == results["baseline"])
    ax.axhline(100 * base["accuracy"] - max_accuracy_drop, color="0.6", linestyle=":",
               label=f"budget: baseline - {points_text(max_accuracy_drop)}")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, ms ({setting_label(setting)}; bars: per-round range)")
    ax.set_ylabel("accuracy, %")
    ax.set_title("accuracy versus latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return png(fig)


def by_batch_size(results: dict) -> bytes:
    import matplotlib.pyplot as plt

    seq_lens = list(dict.fromkeys(s["seq_len"] for s in results["settings"]))
    fig, axes = plt.subplots(2, len(seq_lens), figsize=(5.2 * len(seq_lens), 7.5), squeeze=False)
    for col, seq in enumerate(seq_lens):
        for i, v in enumerate(results["variants"]):
            rows = sorted((r for r in v["latency"] if r["seq_len"] == seq), key=lambda r: r["batch_size"])
            sizes = [r["batch_size"] for r in rows]
            low = [r["p50_ms"] - min(r["round_p50_ms"]) for r in rows]
            high = [max(r["round_p50_ms"]) - r["p50_ms"] for r in rows]
            axes[0][col].errorbar(sizes, [r["p50_ms"] for r in rows], yerr=[low, high], capsize=3, label=v["name"],
                                  **style(results, i, v))
            axes[1][col].plot(sizes, [r["throughput"] for r in rows], label=v["name"], **style(results, i, v))
        what = "real lengths" if seq == "real" else f"{seq} tokens"
        axes[0][col].set_title(f"p50 latency by batch size ({what})")
        axes[0][col].set_ylabel("p50 latency, ms")
        axes[1][col].set_title(f"throughput by batch size ({what})")
        axes[1][col].set_ylabel("samples / s")
        sizes = sorted({s["batch_size"] for s in results["settings"] if s["seq_len"] == seq})
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(b) for b in sizes])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
