"""Serving OpenVINO IR artifacts (``bertc export --openvino``) on the CPU: compiled models and a predictor.

The predictor has the interface of the other predictors (``.labels``, ``.tokenizer``, ``.logits(texts, pairs)``),
so ``bertc evaluate``/``predict``/``bench`` run OpenVINO artifacts like ONNX ones.

How a model is compiled, always:

- ``INFERENCE_PRECISION_HINT`` is passed explicitly, from the manifest. The CPU plugin's own default is bf16 on
  CPUs with bf16 support (AVX512-BF16, AMX), so leaving it out would silently run an f32 model in bf16.
- ``PERFORMANCE_HINT`` LATENCY with one stream: bertc runs one request at a time, as it calls ONNX Runtime's
  ``session.run``. The THROUGHPUT hint splits the cores into several streams meant for concurrent requests, so
  one request would get a fraction of them.
- With ``threads``: ``INFERENCE_NUM_THREADS`` threads, not pinned to cores, hyper-threads counted like cores; the
  way bertc runs ONNX Runtime with an explicit thread count (which then does not pin its threads either).

openvino is imported where it is used: it is an optional extra (``pip install 'bertc[openvino]'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertc.artifact import load_tokenizer
from bertc.errors import BertcError
from bertc.inference.padded import RightPaddedPredictor

KIND = "openvino"
MODEL_FILE, WEIGHTS_FILE = "model.xml", "model.bin"
PRECISIONS = ("f32", "bf16")
EXTRA = "pip install 'bertc[openvino]'"


def import_openvino(what: str = "running OpenVINO models"):
    """The openvino module; a BertcError naming the extra when it is not installed."""
    try:
        import openvino
    except ImportError as err:
        raise BertcError(f"{what} needs OpenVINO: {EXTRA}") from err
    return openvino


def cpu_capabilities(core) -> list[str]:
    """What the CPU plugin can run on this CPU (FP32, BF16, INT8, ...)."""
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def check_precision(core, precision: str, fix: str) -> None:
    """Refuse ``precision`` where the CPU cannot run it: the plugin would fall back to f32 without a word."""
    if precision not in PRECISIONS:
        raise BertcError(f"inference precision {precision!r} is not one of {', '.join(PRECISIONS)}; {fix}")
    if precision == "bf16" and "BF16" not in (capabilities := cpu_capabilities(core)):
        raise BertcError("bf16 inference needs a CPU with bf16 support (AVX512-BF16 or AMX); this one offers "
                         f"{', '.join(capabilities) or 'none'}; {fix}")


def compile_config(precision: str, threads: int | None = None) -> dict:
    """The CPU plugin properties bertc compiles with (see the module docstring)."""
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if threads:
        config.update({"INFERENCE_NUM_THREADS": int(threads), "ENABLE_CPU_PINNING": False,
                       "ENABLE_HYPER_THREADING": True})
    return config


def compile_model(model, precision: str = "f32", threads: int | None = None, *, fix: str = "use f32"):
    """``model`` (an ``openvino.Model`` or a model.xml path) compiled for the CPU at ``precision``."""
    ov = import_openvino()
    core = ov.Core()
    check_precision(core, precision, fix)
    try:
        compiled = core.compile_model(model if isinstance(model, ov.Model) else str(model), "CPU",
                                      compile_config(precision, threads))
    except RuntimeError as err:  # OpenVINO reports every failure as a RuntimeError with a long trace
        raise BertcError(f"OpenVINO could not compile {model if isinstance(model, (str, Path)) else 'the model'}: "
                         f"{first_line(err)}; re-create the artifact with `bertc export --openvino`") from err
    actual = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if actual != precision:
        raise BertcError(f"OpenVINO compiled the model for {actual} although {precision} was asked for; "
                         "report this OpenVINO version to bertc")
    return compiled


def precision_name(element_type) -> str:
    """An OpenVINO element type as bertc names precisions: f32, bf16, f16."""
    return element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)


def compiled_properties(compiled) -> dict:
    """What the compiled model really runs with (recorded beside timings)."""
    names = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
             "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING")
    values = {name: compiled.get_property(name) for name in names}
    values["INFERENCE_PRECISION_HINT"] = precision_name(values["INFERENCE_PRECISION_HINT"])
    return {name: value if isinstance(value, (bool, int, float)) else str(value) for name, value in values.items()}


def first_line(err: BaseException) -> str:
    """The message of an error, without OpenVINO's "Exception from src/...:" location lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception from ")] or lines
    return lines[0] if lines else type(err).__name__


def read_ir(xml: bytes, weights: bytes):
    """An ``openvino.Model`` from the bytes of a model.xml and its model.bin (nothing read from disk)."""
    return import_openvino().Core().read_model(xml, weights)


@dataclass
class OpenVinoPredictor(RightPaddedPredictor):
    compiled: object  # openvino.CompiledModel
    tokenizer: object
    labels: list
    max_length: int = 128
    batch_size: int = 64
    input_names: list[str] = field(init=False)

    def __post_init__(self):
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.tokenizer.padding_side = "right"
        self.request = self.compiled.create_infer_request()

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.request.infer(feeds)[0]


def compile_artifact(path: Path | str, manifest: dict, threads: int | None = None):
    """The compiled model of an OpenVINO artifact, at the inference precision its manifest records."""
    path = Path(path)
    model = manifest["model"]
    xml = path / model.get("file", MODEL_FILE)
    weights = path / model.get("weights_file", WEIGHTS_FILE)
    for file in (xml, weights):
        if not file.is_file():
            raise BertcError(f"{file} is missing; the artifact is damaged, re-create it with "
                             "`bertc export --openvino`")
    precision = model.get("inference_precision", "f32")
    return compile_model(xml, precision, threads,
                         fix=f"{path} was exported for {precision} inference: re-export it with "
                             "`bertc export --openvino --inference-precision f32`")


def load_openvino_predictor(path: Path, manifest: dict, device: str = "cpu", batch_size: int = 64,
                            threads: int | None = None) -> OpenVinoPredictor:
    """The predictor of an OpenVINO artifact (``manifest["model"]["kind"] == "openvino"``); CPU only."""
    if device != "cpu":
        raise BertcError(f"{path} is an OpenVINO model, which bertc runs on the CPU only; use --device cpu")
    task = manifest["task"]
    return OpenVinoPredictor(compiled=compile_artifact(path, manifest, threads), tokenizer=load_tokenizer(path),
                             labels=task["labels"], max_length=task.get("max_length", 128), batch_size=batch_size)
