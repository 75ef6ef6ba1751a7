"""`bertc quantize`: int8 and fp16 models that are measured against their parent before they are written.

Methods (one config class each; ``bertc.export.registry`` maps each to its handler in ``bertc.export.quantizers``):
- ``dynamic``: ONNX Runtime dynamic int8 (weights int8, activations quantized at run time), for CPU serving.
- ``static``: ONNX Runtime static int8 in QDQ format, calibrated on training samples (MinMax/Entropy/Percentile).
- ``fp16``: float16 ONNX for CUDA serving.
- ``torch-dynamic``: PyTorch dynamic int8 of the Linear layers, for CPU serving with PyTorch.
- ``nncf-int8``: NNCF post-training int8 of an OpenVINO artifact (``bertc export --openvino``), calibrated on
  training samples, for CPU serving with OpenVINO.

``quantize_`` quantizes a model in memory. The ``quantize`` stage compares the quantized model with its parent
on labelled data (accuracy, label agreement, logit difference). With ``max_accuracy_drop``, a model that loses
more accuracy is not written: bertc measures how much each layer alone hurts when quantized, keeps the most
sensitive ones in float, one more at a time, and retries. What it kept in float is recorded; if no attempt meets
the budget it stops with an error. nncf-int8 meets the budget with NNCF's own accuracy control instead.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertc.artifact import load_tokenizer, staging_dir, write_manifest
from bertc.errors import BertcError
from bertc.export import graph, nncf_int8
from bertc.export.config import ExportConfig, MethodConfig, QuantizeConfig
from bertc.export.onnx import export_
from bertc.export.quantizers import Source
from bertc.export.registry import handler_for
from bertc.export.reuse import output_to_build
from bertc.export.verify import Samples, check_samples_fit, compare, eval_report, logits_on, verification_samples
from bertc.inference.openvino import KIND as OPENVINO
from bertc.inference.registry import model_manifest
from bertc.torch_artifact import load_model


def quantize_(model, method: MethodConfig, *, tokenizer=None, task: dict | None = None,
              float_groups: tuple[str, ...] | list[str] = (), device: str = "cpu"):
    """Quantize ``model`` in place with ``method`` and return it: an ``onnx.ModelProto`` for the ONNX Runtime
    methods (dynamic, static, fp16), a PyTorch classifier for torch-dynamic. nncf-int8 returns a new
    ``openvino.Model`` and leaves ``model`` as it was. ``float_groups`` ("embeddings", "layer.<i>", "classifier")
    stay in float (not for nncf-int8). Static and nncf-int8 calibration need ``tokenizer`` and ``task`` (its
    ``train_data`` and columns) unless ``method.calibration_data`` names the data."""
    handler_class = handler_for(method)
    source = Source(model, tokenizer, dict(task or {}))
    with tempfile.TemporaryDirectory(prefix="bertc-quantize-") as work:
        return handler_class(source, QuantizeConfig(method=method, device=device), Path(work)).apply_(
            list(float_groups))


def quantize(src: Path | str, config: QuantizeConfig, out: Path | str, *, overwrite: bool = False,
             resume: bool = False) -> Path:
    """Quantize the artifact ``src`` with ``config.method``, measure it against ``src``, write it to ``out``.

    With ``resume``, an ``out`` already quantized from the same parent with the same config is kept as it is."""
    src, manifest = model_manifest(src)
    out, built = output_to_build(out, stage="quantize", config=config, src=src, overwrite=overwrite, resume=resume)
    if built:
        return out
    handler_class = handler_for(config.method)
    handler_class.check_source(src, manifest, config.method)
    task = manifest["task"]
    samples = verification_samples(config.eval_data, task, config.split, config.eval_samples)
    check_samples_fit(samples, task["labels"])
    if config.max_accuracy_drop is not None and not samples.labelled:
        raise BertcError("--max-accuracy-drop needs labelled data and none is recorded in the artifact; "
                         "pass --eval PATH")
    source = load_source(src, manifest, handler_class.source_kind, config, samples)
    with tempfile.TemporaryDirectory(prefix="bertc-quantize-") as work:
        handler = handler_class(source, config, Path(work))
        outcome = search(handler, samples, config)
        with staging_dir(out, overwrite) as tmp:
            model = handler.save(outcome.candidate, outcome.float_groups, tmp)
            metrics = {"verification": outcome.result, "accuracy_budget": outcome.budget,
                       "attempts": outcome.attempts}
            if outcome.sensitivity is not None:
                metrics["sensitivity"] = outcome.sensitivity
            if samples.labelled:
                metrics["eval"] = eval_report(outcome.logits, samples, task["labels"])
            metrics.update(handler.extra_metrics())
            write_manifest(tmp, stage="quantize", config=config, parent=src, model=model, task=task,
                           metrics=metrics)
    return out


def load_source(src: Path, manifest: dict, kind: str, config: QuantizeConfig, samples: Samples) -> Source:
    """The parent in memory as the method needs it; a PyTorch parent of an ONNX method is exported (and verified)
    in memory first, on the samples the quantized model is measured on."""
    task, tokenizer = manifest["task"], load_tokenizer(src)
    parent_kind = manifest["model"].get("kind", "pytorch")
    if kind == "pytorch":
        return Source(load_model(src), tokenizer, task, manifest["model"])
    if kind == OPENVINO:  # the handler's check_source has refused every other parent kind
        model = nncf_int8.read_artifact_ir(src, manifest["model"])
        return Source(model, tokenizer, task, manifest["model"], file=nncf_int8.ir_files(src, manifest["model"])[0])
    if parent_kind == "onnx":
        file = src / manifest["model"].get("file", "model.onnx")
        return Source(graph.load_graph(file), tokenizer, task, manifest["model"], file=file)
    export_config = ExportConfig(data=config.eval_data, split=config.split, verify_samples=config.eval_samples,
                                 device=config.device)
    exported = export_(load_model(src, attn_implementation="eager"), tokenizer, export_config, task=task,
                       samples=samples)
    return Source(exported.proto, tokenizer, task, exported.description, export_metrics=exported.metrics)


@dataclass
class Outcome:
    candidate: object
    logits: object
    result: dict
    float_groups: list[str]
    attempts: list[dict]
    budget: dict
    sensitivity: dict | None = None


def search(handler, samples: Samples, config: QuantizeConfig) -> Outcome:
    """Quantize everything; if that misses the accuracy budget, keep the most sensitive layers in float."""
    labels = handler.labels
    reference = logits_on(handler.reference_predictor(), samples)
    attempts = []

    def attempt(float_groups: list[str]):
        candidate = handler.build(float_groups)
        logits = logits_on(handler.predictor(candidate), samples)
        result = compare(reference, logits, samples, labels)
        result["reference"] = handler.reference_name
        attempts.append({"float_groups": list(float_groups), **{k: result.get(k) for k in (
            "accuracy", "reference_accuracy", "accuracy_drop_points", "label_agreement", "max_abs_logit_diff")}})
        return candidate, logits, result

    def budget(result: dict) -> dict:
        limit = config.max_accuracy_drop
        met = None if limit is None else result["accuracy_drop_points"] <= limit + 1e-9
        return {"max_accuracy_drop_points": limit, "accuracy_drop_points": result.get("accuracy_drop_points"),
                "met": met}

    candidate, logits, result = attempt([])
    if config.max_accuracy_drop is None or budget(result)["met"]:
        return Outcome(candidate, logits, result, [], attempts, budget(result))
    if getattr(handler, "controls_accuracy", False):  # a handler that does not say so leaves it to the search
        raise BertcError(
            f"{handler.variant} loses {result['accuracy_drop_points']:.2f} accuracy points on {samples.source}, more "
            f"than --max-accuracy-drop {config.max_accuracy_drop:g}, after the method's own accuracy control. "
            "Nothing was written. Allow more with --max-accuracy-drop, or try another --method")
    sensitivity = measure_sensitivity(handler, samples, reference, config.sensitivity_samples)
    ranking = sorted(sensitivity, key=sensitivity.get, reverse=True)
    handler.discard(candidate)
    for count in range(1, min(config.max_float_layers, len(ranking)) + 1):
        float_groups = ranking[:count]
        candidate, logits, result = attempt(float_groups)
        if budget(result)["met"]:
            return Outcome(candidate, logits, result, float_groups, attempts, budget(result), sensitivity)
        handler.discard(candidate)
    best = min(attempts, key=lambda a: a["accuracy_drop_points"])
    raise BertcError(
        f"{handler.variant} loses {attempts[0]['accuracy_drop_points']:.2f} accuracy points on {samples.source}, "
        f"more than --max-accuracy-drop {config.max_accuracy_drop:g}; keeping up to {len(attempts) - 1} of the most "
        f"sensitive layers in float ({', '.join(ranking[:len(attempts) - 1])}) still lost "
        f"{best['accuracy_drop_points']:.2f} at best (with {best['float_groups'] or 'none'} in float). Nothing was "
        "written. Allow more with --max-float-layers or --max-accuracy-drop, or try another --method")


def measure_sensitivity(handler, samples: Samples, reference, count: int) -> dict[str, float]:
    """Mean absolute logit change when only one group (a layer, the embeddings, the classifier) is quantized."""
    subset = Samples(samples.dataset.head(count), samples.source, samples.labelled)
    groups = handler.groups()
    scores = {}
    for group in groups:
        candidate = handler.build([g for g in groups if g != group])
        logits = logits_on(handler.predictor(candidate), subset)
        handler.discard(candidate)
        scores[group] = float(np.abs(logits - reference[:len(logits)]).mean())
    return scores


