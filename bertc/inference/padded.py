"""What the ONNX Runtime and OpenVINO predictors share: texts to right-padded int64 batches in the model's input
names, and logits batch by batch. Right padding because ORT's fused Attention reads the mask as "the first N
tokens are real"."""

from __future__ import annotations

import numpy as np

from bertc.data.batching import padded_batches


class RightPaddedPredictor:
    """A mixin: the class provides ``tokenizer``, ``labels``, ``max_length``, ``batch_size``, ``input_names``
    and ``infer(feeds) -> logits``."""

    def feeds(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One right-padded int64 batch in the model's input names (what a bare runtime call needs)."""
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="np")
        return {name: encoded[name].astype(np.int64, copy=False) for name in self.input_names}

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for batch, padded in padded_batches(self.tokenizer, encoded, self.batch_size, "np", self.input_names):
            out[batch] = self.infer({name: padded[name].astype(np.int64, copy=False) for name in self.input_names})
        return out
