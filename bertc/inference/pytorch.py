"""The PyTorch predictor: a classifier with its tokenizer, run in length-grouped, per-batch padded batches.

torch is imported where it is used, so `import bertc.inference` stays light for ONNX serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bertc.artifact import load_tokenizer
from bertc.data.batching import padded_batches
from bertc.errors import BertcError

if TYPE_CHECKING:
    import torch


@dataclass
class TorchPredictor:
    model: torch.nn.Module
    tokenizer: object
    labels: list
    max_length: int = 128
    batch_size: int = 64
    device: str = "cpu"

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        import torch

        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for batch, inputs in padded_batches(self.tokenizer, encoded, self.batch_size, "pt"):
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                out[batch] = self.model(**inputs).logits.float().cpu().numpy()
        return out


def load_torch_predictor(path: Path, manifest: dict, device: str = "cpu", batch_size: int = 64) -> TorchPredictor:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BertcError("--device cuda was given but PyTorch sees no CUDA GPU; use --device cpu")
    from bertc.torch_artifact import load_model  # the PyTorch runtime: ONNX serving never imports it

    model = load_model(path, device=device)
    return TorchPredictor(model=model, tokenizer=load_tokenizer(path), labels=manifest["task"]["labels"],
                          max_length=manifest["task"].get("max_length", 128), batch_size=batch_size,
                          device=device)
