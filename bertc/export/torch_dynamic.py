"""PyTorch dynamic int8 (``--method torch-dynamic``): for users who serve with PyTorch on CPU.

The artifact stores the float weights (safetensors) and the recipe below in its manifest; the predictor loader of
``bertc.inference.torch_quantized`` applies it when the artifact is loaded. This module holds what quantizing
needs on top: which layer group each Linear belongs to (so the most sensitive layers can stay in float), and the
recipe the manifest records.
"""

from __future__ import annotations

from torch import nn

from bertc.export.graph import EMBEDDINGS, HEAD


def linear_groups(model) -> dict[str, str]:
    """Name of every Linear module -> "embeddings", "layer.<i>" or "classifier"."""
    prefix = f"{model.base_model_prefix}.encoder.layer."
    embeddings = f"{model.base_model_prefix}.embeddings."
    groups = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if name.startswith(prefix):
            groups[name] = f"layer.{name[len(prefix):].split('.')[0]}"
        elif name.startswith(embeddings):
            groups[name] = EMBEDDINGS
        else:
            groups[name] = HEAD
    return groups


def recipe(float_modules: list[str], float_groups: list[str]) -> dict:
    return {"method": "torch-dynamic", "tool": "torch.ao.quantization.quantize_dynamic",
            "modules": "torch.nn.Linear", "dtype": "qint8", "float_groups": float_groups,
            "float_modules": float_modules,
            "applied": "when loaded: the weights are stored in float32 safetensors (no pickle)"}
