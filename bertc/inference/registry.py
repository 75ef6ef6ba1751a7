"""Which predictor runs which artifact: one loader per ``model.kind`` of the manifest.

``PREDICTOR_LOADERS`` names the loader of every kind bertc writes (``register_predictor_loader`` adds one);
``load_predictor`` reads the manifest and calls the loader of its kind. Every loader takes
``(path, manifest, device, batch_size)`` and returns a predictor: ``.labels`` and ``.logits(texts, pairs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bertc.artifact import is_artifact, read_manifest
from bertc.checks import raise_problems
from bertc.errors import BertcError
from bertc.inference.onnx import load_onnx_predictor
from bertc.inference.openvino import KIND as OPENVINO
from bertc.inference.openvino import load_openvino_predictor
from bertc.inference.pytorch import load_torch_predictor
from bertc.inference.torch_quantized import KIND as TORCH_QUANTIZED
from bertc.inference.torch_quantized import load_torch_dynamic_predictor

# The OpenVINO loader imports openvino only when it runs: an optional extra, and heavy.
PREDICTOR_LOADERS: dict[str, Callable] = {"pytorch": load_torch_predictor, "onnx": load_onnx_predictor,
                                          TORCH_QUANTIZED: load_torch_dynamic_predictor,
                                          OPENVINO: load_openvino_predictor}
DEVICES = ("cpu", "cuda")


def register_predictor_loader(kind: str) -> Callable[[Callable], Callable]:
    """Decorator: ``loader`` runs artifacts whose manifest says ``model.kind == kind``."""

    def register(loader: Callable) -> Callable:
        PREDICTOR_LOADERS[kind] = loader
        return loader

    return register


def check_runtime(device: str, batch_size: int, max_samples: int | None = None) -> None:
    """The options of running an artifact on data, checked before any model is loaded: all problems at once."""
    problems = []
    if device not in DEVICES:
        problems.append(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    for flag, value in (("--batch-size", batch_size), ("--max-samples", max_samples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"{flag} must be a whole number of at least 1, got {value!r}")
    raise_problems(problems)


def load_predictor(path: Path | str, device: str = "cpu", batch_size: int = 64):
    """The predictor of the artifact at ``path``, chosen by its model kind."""
    check_runtime(device, batch_size)
    path, manifest = model_manifest(path)
    kind = manifest["model"].get("kind", "pytorch")
    if kind not in PREDICTOR_LOADERS:
        raise BertcError(f"{path} holds a '{kind}' model that this installation cannot run; "
                         f"known kinds: {', '.join(sorted(PREDICTOR_LOADERS))}")
    return PREDICTOR_LOADERS[kind](path, manifest, device, batch_size)


def model_manifest(path: Path | str) -> tuple[Path, dict]:
    """The directory and manifest of an artifact; or, for a fine-tuned transformers classifier bertc did not make
    (a directory or Hub id), its local directory and the manifest `bertc import` would write."""
    if is_artifact(path):
        return Path(path), read_manifest(path)
    # a model bertc did not make is a PyTorch one: serving an artifact's ONNX model never imports torch
    from bertc.imports.source import describe_classifier

    return describe_classifier(path)
