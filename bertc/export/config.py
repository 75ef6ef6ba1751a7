"""The options of `bertc export` and `bertc quantize` (light: no onnx or torch import)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from bertc.checks import check_config, field_problems, flag, raise_problems, well_typed
from bertc.errors import BertcError

MIN_OPSET, MAX_OPSET = 14, 20


Optimize = Literal["none", "basic", "all"]
Split = Literal["train", "validation", "test"]
Device = Literal["cpu", "cuda"]
InferencePrecision = Literal["f32", "bf16"]


DEFAULT_ATOL = {"fp32": 1e-3, "fp16": 5e-2}


@dataclass(frozen=True)
class ExportConfig:
    optimize: Optimize = "all"  # ONNX Runtime optimization: none, basic (generic passes) or all (BERT fusion)
    opset: int = 17  # ONNX opset version (14 to 20)
    fp16: bool = False  # convert weights to float16 for GPU serving (inputs and logits stay int64/float32)
    strict: bool = False  # fail when fewer Attention nodes fuse than the model has attention layers
    data: str | None = None  # labelled data to verify on (default: the eval data recorded in the artifact)
    split: Split = "validation"  # split to use when --data is a directory of splits
    verify_samples: int = 1000  # verify on at most this many examples
    atol: float | None = None  # largest allowed logit difference to PyTorch (default 1e-3, fp16 5e-2)
    min_agreement: float = 0.995  # smallest allowed share of examples labelled as PyTorch labels them
    device: Device = "cpu"  # execution provider for verification: cpu or cuda
    openvino: bool = False  # write OpenVINO IR (model.xml) instead of ONNX; needs `pip install bertc[openvino]`
    inference_precision: InferencePrecision = "f32"  # OpenVINO CPU precision: f32, or bf16 (CPUs with bf16 only)

    def __post_init__(self):
        problems = field_problems(self)
        ok = well_typed(self, problems)  # ranges only mean something once the types are right
        if {"openvino", "fp16"} <= ok and self.openvino and self.fp16:
            problems.append("--fp16 converts ONNX weights for GPUs; OpenVINO runs on the CPU: drop --fp16, or use "
                            "--inference-precision bf16 with --openvino")
        if {"openvino", "inference_precision"} <= ok and not self.openvino and self.inference_precision != "f32":
            problems.append(f"--inference-precision {self.inference_precision} is OpenVINO's; add --openvino")
        if "opset" in ok and not MIN_OPSET <= self.opset <= MAX_OPSET:
            problems.append(f"--opset {self.opset} is not supported; use {MIN_OPSET} to {MAX_OPSET} (default 17)")
        if {"strict", "optimize"} <= ok and self.strict and self.optimize != "all":
            problems.append(f"--strict checks Attention fusion, which --optimize {self.optimize} does not do; "
                            "drop --strict or use --optimize all")
        if "verify_samples" in ok and self.verify_samples < 1:
            problems.append(f"--verify-samples must be at least 1, got {self.verify_samples}")
        if "atol" in ok and self.atol is not None and self.atol <= 0:
            problems.append(f"--atol must be positive, got {self.atol}")
        if "min_agreement" in ok and not 0 <= self.min_agreement <= 1:
            problems.append(f"--min-agreement must be in [0, 1], got {self.min_agreement}")
        raise_problems(problems)

    @property
    def variant(self) -> str:
        return "fp16" if self.fp16 else "fp32"

    @property
    def tolerance(self) -> float:
        return self.atol if self.atol is not None else DEFAULT_ATOL[self.variant]


Calibration = Literal["minmax", "entropy", "percentile"]


# Each method config names its variant (``model.variant`` of the artifacts it makes); its handler is registered
# for it in bertc.export.quantizers.
@dataclass(frozen=True)
class DynamicQuantConfig:
    per_channel: bool = False  # one int8 scale per output channel of each weight (slower, sometimes more accurate)
    reduce_range: bool = False  # 7-bit weights, avoids int16 saturation on CPUs without VNNI
    method: str = field(default="dynamic", init=False)
    variant: ClassVar[str] = "int8-dynamic"

    __post_init__ = check_config


@dataclass(frozen=True)
class StaticQuantConfig:
    calibration: Calibration = "minmax"  # calibration method: minmax, entropy or percentile
    calibration_data: str | None = None  # data to calibrate on (default: the parent's training data)
    calibration_samples: int = 200  # calibrate on this many randomly chosen examples
    percentile: float = 99.999  # the percentile used by --calibration percentile
    per_channel: bool = False  # one int8 scale per output channel of each weight
    reduce_range: bool = False  # 7-bit weights, avoids int16 saturation on CPUs without VNNI
    seed: int = 0  # seed of the calibration sample
    method: str = field(default="static", init=False)
    variant: ClassVar[str] = "int8-static"

    def __post_init__(self):
        problems = field_problems(self)
        ok = well_typed(self, problems)
        if "calibration_samples" in ok and self.calibration_samples < 1:
            problems.append(f"--calibration-samples must be at least 1, got {self.calibration_samples}")
        if "percentile" in ok and not 50 < self.percentile <= 100:
            problems.append(f"--percentile must be in (50, 100], got {self.percentile}")
        raise_problems(problems)


@dataclass(frozen=True)
class Fp16Config:
    method: str = field(default="fp16", init=False)
    variant: ClassVar[str] = "fp16"

    __post_init__ = check_config


@dataclass(frozen=True)
class TorchDynamicConfig:
    method: str = field(default="torch-dynamic", init=False)
    variant: ClassVar[str] = "int8-torch-dynamic"

    __post_init__ = check_config


@dataclass(frozen=True)
class NncfInt8Config:
    calibration_data: str | None = None  # data to calibrate on (default: the parent's training data)
    calibration_samples: int = 300  # calibrate on this many randomly chosen examples
    seed: int = 0  # seed of the calibration sample
    method: str = field(default="nncf-int8", init=False)
    variant: ClassVar[str] = "int8-nncf"

    def __post_init__(self):
        problems = field_problems(self)
        if "calibration_samples" in well_typed(self, problems) and self.calibration_samples < 1:
            problems.append(f"--calibration-samples must be at least 1, got {self.calibration_samples}")
        raise_problems(problems)


MethodConfig = DynamicQuantConfig | StaticQuantConfig | Fp16Config | TorchDynamicConfig | NncfInt8Config
METHOD_CONFIGS: tuple[type, ...] = typing.get_args(MethodConfig)


@dataclass(frozen=True)
class QuantizeConfig:
    method: MethodConfig = field(default_factory=DynamicQuantConfig)  # the method and its options
    eval_data: str | None = None  # labelled data to compare with the parent (default: the parent's eval data)
    split: Split = "validation"  # split to use when --eval is a directory of splits
    eval_samples: int = 1000  # compare on at most this many examples
    max_accuracy_drop: float | None = None  # accuracy points the model may lose; beyond it, bertc keeps the
    #                                          most sensitive layers in float and retries, and writes nothing if
    #                                          no attempt fits
    max_float_layers: int = 3  # the retry keeps at most this many of the most sensitive layers in float
    sensitivity_samples: int = 200  # examples used to rank layers by sensitivity
    device: Device = "cpu"  # execution provider used to measure: cpu or cuda

    def __post_init__(self):
        problems = field_problems(self)
        if not isinstance(self.method, METHOD_CONFIGS):  # say what it is rather than "must be a <first class>"
            problems = [p for p in problems if not p.startswith("--method ")]
            problems.insert(0, f"unknown quantization method config {type(self.method).__name__}; use one of "
                               f"{', '.join(cls.__name__ for cls in METHOD_CONFIGS)}")
        ok = well_typed(self, problems)
        for name in ("eval_samples", "sensitivity_samples", "max_float_layers"):
            if name in ok and getattr(self, name) < 1:
                problems.append(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if "max_accuracy_drop" in ok and self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            problems.append(f"--max-accuracy-drop must be >= 0 (accuracy points), got {self.max_accuracy_drop}")
        raise_problems(problems)


def method_config(method: str, *, per_channel: bool | None = None, reduce_range: bool | None = None,
                  calibration: str | None = None, calibration_data: str | None = None,
                  calibration_samples: int | None = None, percentile: float | None = None) -> MethodConfig:
    """The config of ``method`` from CLI-style options; an option the method does not take is an error."""
    given = {"per_channel": per_channel, "reduce_range": reduce_range, "calibration": calibration,
             "calibration_data": calibration_data, "calibration_samples": calibration_samples,
             "percentile": percentile}
    given = {k: v for k, v in given.items() if v is not None and v is not False}
    classes = {cls.__dataclass_fields__["method"].default: cls for cls in METHOD_CONFIGS}
    if method not in classes:
        raise BertcError(f"--method {method!r} is not one of {', '.join(classes)}")
    cls = classes[method]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init} - {"seed"}
    wrong = sorted(set(given) - accepted)
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise BertcError(f"{flags} {'does' if len(wrong) == 1 else 'do'} not apply to --method {method}"
                         + (f"; it takes {', '.join('--' + a.replace('_', '-') for a in sorted(accepted))}"
                            if accepted else "; it takes no options"))
    return cls(**given)
