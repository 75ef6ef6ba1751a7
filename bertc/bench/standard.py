"""``--standard-recipe``: what a user gets without bertc's compression, benched beside the variants.

The fine-tuned model in PyTorch eager, and its ONNX Runtime int8: bertc's own export (ORT transformer optimizer,
fused) and dynamic quantization with default options, verified on the bench data and deleted after the run.
"""

from __future__ import annotations

from pathlib import Path

from bertc.artifact import is_artifact, read_manifest
from bertc.bench.config import BenchConfig
from bertc.bench.variants import describe_variant
from bertc.errors import BertcError
from bertc.export.config import ExportConfig, QuantizeConfig
from bertc.export.onnx import export
from bertc.export.quantize import quantize


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
    """The standard-recipe variants of the baseline's fine-tuned parent, built under ``tmp``."""
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
