"""What is benched: one record per artifact, read from its manifest (kind, variant, lineage, size, parameters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertc.artifact import is_artifact, read_manifest
from bertc.errors import BertcError
from bertc.inference.registry import model_manifest

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".data", ".onnx_data", ".pt", ".bin", ".xml")  # .xml: OpenVINO's graph
KINDS = ("pytorch", "pytorch-quantized", "onnx", "openvino")
BACKENDS = {"onnx": "onnxruntime", "openvino": "openvino"}  # every other kind runs in PyTorch eager


def describe_variants(artifacts, baseline: str | None) -> list[dict]:
    """One record per artifact (baseline first), read from its manifest; fails on anything not bertc's."""
    paths = [Path(a).absolute() if Path(a).exists() else Path(a) for a in artifacts]  # else a Hub id
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
    path, manifest = model_manifest(path)
    model = manifest.get("model", {})
    kind = model.get("kind", "pytorch")
    return {
        "name": path.name, "path": str(path), "kind": kind,
        "backend": BACKENDS.get(kind, "pytorch-eager"),
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
        parts.append(shape_summary(model["heads_per_layer"], model.get("ffn_per_layer") or []))
    if model.get("num_parameters"):
        parts.append(f"{model['num_parameters'] / 1e6:.2f}M parameters")
    accuracy = manifest.get("metrics", {}).get("eval", {}).get("accuracy")
    if accuracy is not None:
        parts.append(f"eval accuracy {100 * accuracy:.2f}%")
    if manifest.get("search"):
        parts.append(search_summary(manifest["search"]))
    return "; ".join(parts)


def search_summary(search: dict) -> str:
    """A `finetune --search` in one phrase: its trials, how many were pruned, and the options it kept."""
    trials = search.get("trials", [])
    pruned = sum(1 for t in trials if t.get("state") == "pruned")
    best = search.get("best", {})
    options = ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                        for name, value in best.get("params", {}).items())
    score = best.get(search.get("objective", ""))
    scored = f", {100 * score:.2f}% eval accuracy" if isinstance(score, float) else ""
    return (f"searched {search.get('space')} in {len(trials)} trials on {search.get('train_rows')} rows "
            f"({pruned} pruned): kept {options}{scored}")


def shape_summary(heads: list[int], ffn: list[int]) -> str:
    """Per-layer sizes as they are, never summed: "6 layers, 12 heads and FFN 1536 per layer", or the list of
    each layer's size where layers differ ("3 layers, heads 4,4,2 and FFN 1536,768,768 per layer")."""
    def sizes(values: list[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)

    def plural(count: int, word: str) -> str:
        return f"{count} {word}" + ("" if count == 1 else "s")

    per_layer = [plural(heads[0], "head") if len(set(heads)) == 1 else f"heads {sizes(heads)}"]
    if ffn:
        per_layer.append(f"FFN {sizes(ffn)}")
    return f"{plural(len(heads), 'layer')}, {' and '.join(per_layer)} per layer"


def model_size(path: Path) -> int:
    """Bytes of the weight files (safetensors, ONNX graph and external data, OpenVINO IR), not the tokenizer."""
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
