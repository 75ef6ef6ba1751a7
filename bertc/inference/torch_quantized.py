"""PyTorch dynamic int8 artifacts (``bertc quantize --method torch-dynamic``), rebuilt when they are loaded.

A dynamically quantized model has packed int8 weights that safetensors cannot hold, and bertc loads no pickle.
So the artifact stores the float weights like any PyTorch artifact and its manifest holds the recipe:

    "model": {"kind": "pytorch-quantized", "variant": "int8-torch-dynamic",
              "quantization": {"method": "torch-dynamic", "modules": "torch.nn.Linear", "dtype": "qint8",
                               "float_modules": [...], "applied": "when loaded"}}

The loader registered for ``pytorch-quantized`` loads the float model and applies
``torch.ao.quantization.quantize_dynamic`` to every Linear except ``float_modules``: a deterministic function of
the weights, so the model is the one that was measured when it was written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from bertc.artifact import load_tokenizer
from bertc.errors import BertcError
from bertc.inference.pytorch import TorchPredictor

KIND = "pytorch-quantized"


def quantize_linear_dynamic(model, float_modules: list[str]):
    """``model`` with every Linear except ``float_modules`` replaced by a dynamic int8 one, in place (CPU only)."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
            from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    except ImportError as err:
        raise BertcError("this PyTorch has no torch.ao.quantization.quantize_dynamic; serve the ONNX int8 model "
                         "(`bertc quantize --method dynamic`) instead") from err
    keep = set(float_modules)
    spec = {name: default_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name not in keep}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model.cpu().eval(), spec, dtype=torch.qint8, inplace=True)


def load_torch_dynamic_predictor(path: Path, manifest: dict, device: str = "cpu",
                                 batch_size: int = 64) -> TorchPredictor:
    if device != "cpu":
        raise BertcError("PyTorch dynamic int8 models run on the CPU only; use --device cpu, or serve the fp16 "
                         "ONNX model (`bertc quantize --method fp16`) on a GPU")
    quantization = manifest["model"].get("quantization") or {}
    if quantization.get("method") != "torch-dynamic":
        raise BertcError(f"{path} is a {KIND} artifact with an unknown recipe {quantization.get('method')!r}; "
                         "re-create it with `bertc quantize --method torch-dynamic`")
    from bertc.torch_artifact import load_model  # the PyTorch runtime: ONNX serving never imports it

    model = quantize_linear_dynamic(load_model(path), quantization.get("float_modules", []))
    task = manifest["task"]
    return TorchPredictor(model=model, tokenizer=load_tokenizer(path), labels=task["labels"],
                          max_length=task.get("max_length", 128), batch_size=batch_size, device="cpu")
