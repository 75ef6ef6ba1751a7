"""Serving ONNX artifacts with ONNX Runtime: sessions on the CPU or CUDA execution provider, and a predictor.

The predictor has the interface of the other predictors (``.labels``, ``.logits(texts, pairs)``), so
``bertc evaluate``/``predict``/``bench`` run ONNX artifacts like PyTorch ones. Inputs are right-padded: the
fused Attention of ORT reads the mask as "first N tokens are real", which right padding guarantees.
onnxruntime is imported where it is used: it is heavy, and `import bertc.inference` must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertc.artifact import load_tokenizer
from bertc.errors import BertcError
from bertc.inference.padded import RightPaddedPredictor

CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def providers_for(device: str, available: list[str] | None = None) -> list[str]:
    """Execution providers for ``device``; CUDA needs the onnxruntime-gpu package and a GPU."""
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "cuda":
        if CUDA_PROVIDER not in available:
            raise BertcError("--device cuda needs onnxruntime-gpu and a CUDA GPU; this onnxruntime offers "
                             f"{', '.join(available)}. Install it with `pip install 'bertc[gpu]'` (and uninstall "
                             "the CPU-only onnxruntime), or use --device cpu")
        return [CUDA_PROVIDER, CPU_PROVIDER]
    raise BertcError(f"--device {device!r} is not one of cpu, cuda")


# The session options that decide whether ONNX Runtime's worker threads busy-wait (one config entry each way).
SPIN_WITHIN_RUNS = ("session.force_spinning_stop", "1")
NO_SPINNING = ("session.intra_op.allow_spinning", "0")


def create_session(model_file: Path | str | bytes, device: str = "cpu", threads: int | None = None,
                   spinning: bool = True):
    """An InferenceSession with all graph optimizations; ``threads`` intra-op threads (default: ORT's).

    ``model_file`` is a file or a serialized ModelProto (a graph built in memory).

    Worker threads busy-wait for the next operator only while a ``run`` is going on, and stop when it returns
    (``session.force_spinning_stop``): an idle session leaves the cores to whatever runs next, as in an
    interleaved benchmark or beside other work, yet no operator waits for a sleeping thread to wake up. On 2 Xeon
    cores at batch 1 this made the int8 MiniLM 14% and its 3-layer student 17% faster than no spinning
    (README, "Serving without bertc").
    ``spinning=False`` turns spinning off altogether."""
    import onnxruntime

    providers = providers_for(device)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT warns about every fused op it places on the CPU
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry(*SPIN_WITHIN_RUNS if spinning else NO_SPINNING)
    try:
        source = model_file if isinstance(model_file, bytes) else str(model_file)
        session = onnxruntime.InferenceSession(source, options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        what = "the graph built in memory" if isinstance(model_file, bytes) else model_file
        raise BertcError(f"ONNX Runtime could not load {what}: {str(err).splitlines()[0]}; re-create "
                         "the artifact with `bertc export`") from err
    if device == "cuda" and session.get_providers()[0] != CUDA_PROVIDER:
        raise BertcError("the CUDA execution provider failed to start (CUDA or cuDNN libraries missing?); "
                         "check `python -c 'import onnxruntime; onnxruntime.preload_dlls()'` or use --device cpu")
    return session


@dataclass
class OnnxPredictor(RightPaddedPredictor):
    session: object  # onnxruntime.InferenceSession
    tokenizer: object
    labels: list
    max_length: int = 128
    batch_size: int = 64

    def __post_init__(self):
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer.padding_side = "right"

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], feeds)[0]


def load_onnx_predictor(path: Path, manifest: dict, device: str = "cpu", batch_size: int = 64,
                        threads: int | None = None) -> OnnxPredictor:
    """The predictor of an ONNX artifact (``manifest["model"]["kind"] == "onnx"``)."""
    path = Path(path)
    model_file = path / manifest["model"].get("file", "model.onnx")
    if not model_file.is_file():
        raise BertcError(f"{model_file} is missing; the artifact is damaged, re-create it with `bertc export`")
    task = manifest["task"]
    return OnnxPredictor(session=create_session(model_file, device, threads), tokenizer=load_tokenizer(path),
                         labels=task["labels"], max_length=task.get("max_length", 128), batch_size=batch_size)
