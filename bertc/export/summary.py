"""What `bertc export` and `bertc quantize` print: fused operators (or the OpenVINO IR), verification and the
accuracy budget."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from bertc.artifact import read_manifest
from bertc.console import console
from bertc.formatting import pct as percent


def pct(value) -> str:
    return "-" if value is None else f"{percent(value)}%"


def verification_table(result: dict, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("data", f"{result['data']} ({result['samples']} examples)")
    table.add_row("compared with", str(result.get("reference")))
    table.add_row("max |logit difference|", f"{result['max_abs_logit_diff']:.3g}"
                  + (f"  (tolerance {result['atol']:g})" if "atol" in result else ""))
    table.add_row("label agreement", f"{pct(result['label_agreement'])}  ({result['disagreements']} differ)")
    if "accuracy" in result:
        table.add_row("accuracy", f"{pct(result['accuracy'])}  (reference {pct(result['reference_accuracy'])}, "
                                  f"drop {result['accuracy_drop_points']:+.2f} points)")
    return table


def print_export(path: Path) -> None:
    manifest = read_manifest(path)
    model = manifest["model"]
    if model.get("kind") == "openvino":
        console.print(openvino_table(model))
        console.print(verification_table(manifest["metrics"]["verification"], "verification against PyTorch"))
        console.print(f"wrote {path}", soft_wrap=True)
        return
    fusion = Table(title="fused operators", caption=f"--optimize {model['optimize']}, {model['variant']}")
    fusion.add_column("operator")
    fusion.add_column("nodes", justify="right")
    for op, count in model["fusion"].items():
        fusion.add_row(op, str(count))
    console.print(fusion)
    check = model.get("fusion_check")
    if check is not None and check.get("applies", True):  # else the export logged its one-line note
        heads = ", ".join(str(node["num_heads"]) for node in check["nodes"])
        line = (f"Attention fused in {check['fused_attention']} of {check['attention_layers']} attention layers "
                f"(heads per fused node: {heads or '-'}; model: {model['heads_per_layer']})")
        console.print(line if check["complete"] else f"[bold red]WARNING: {line}; the model runs, but slower"
                      "[/bold red]", soft_wrap=True)
    console.print(verification_table(manifest["metrics"]["verification"], "verification against PyTorch"))
    console.print(f"wrote {path}", soft_wrap=True)


def openvino_table(model: dict) -> Table:
    table = Table(title="OpenVINO IR", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("files", f"{model['file']} + {model['weights_file']} ({model['size_bytes'] / 2**20:.1f} MiB)")
    table.add_row("inference precision", f"{model['inference_precision']} (CPU plugin, set explicitly)")
    table.add_row("inputs", ", ".join(model["inputs"]) + " (dynamic batch and sequence)")
    table.add_row("OpenVINO", model["openvino_version"])
    return table


def print_quantize(path: Path) -> None:
    manifest = read_manifest(path)
    model, metrics = manifest["model"], manifest["metrics"]
    console.print(verification_table(metrics["verification"], f"{model['variant']} against its parent"))
    budget = metrics["accuracy_budget"]
    if budget["met"] is None:
        console.print("no accuracy budget given (--max-accuracy-drop): measured, not enforced", soft_wrap=True)
    else:
        console.print(f"accuracy budget: drop {budget['accuracy_drop_points']:+.2f} <= "
                      f"{budget['max_accuracy_drop_points']:g} points", soft_wrap=True)
    kept = model["quantization"].get("float_groups") or []
    if kept:
        console.print(f"[bold yellow]kept in float (most sensitive first): {', '.join(kept)}[/bold yellow]; "
                      f"attempts: {len(metrics['attempts'])}", soft_wrap=True)
    console.print(f"wrote {path}", soft_wrap=True)
