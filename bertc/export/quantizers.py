"""The work behind each quantization method, one handler per method config, registered in ``bertc.export.registry``.

A handler quantizes a ``Source`` (a model in memory and what it needs around it). ``bertc.export.quantize``
drives every handler through the same small interface:

    Handler.check_source(src, manifest, method)                        refuse a parent before anything loads
    handler = Handler(source, config, work)
    handler.groups() -> ["embeddings", "layer.0", ..., "classifier"]   groups the method quantizes
    handler.build(float_groups) -> candidate                           quantize all other groups
    handler.predictor(candidate), handler.reference_predictor()        run a candidate / the parent
    handler.apply_(float_groups)                                       quantize the source model itself
    handler.save(candidate, float_groups, directory) -> manifest["model"]

A handler whose ``controls_accuracy`` is true meets ``--max-accuracy-drop`` inside ``build`` (nncf-int8: NNCF's
own accuracy control); the stage then measures its one candidate and does not search layers to keep in float.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from bertc.errors import BertcError
from bertc.export import graph, nncf_int8
from bertc.export.calibration import FeedsReader, calibration_texts, check_activations_quantized
from bertc.export.config import (
    DynamicQuantConfig,
    Fp16Config,
    NncfInt8Config,
    QuantizeConfig,
    StaticQuantConfig,
    TorchDynamicConfig,
)
from bertc.export.onnx import to_fp16
from bertc.export.openvino import VARIANTS as FLOAT_VARIANTS
from bertc.export.registry import register_quantize_handler
from bertc.export.torch_dynamic import linear_groups, recipe
from bertc.export.verify import verification_samples
from bertc.inference.onnx import OnnxPredictor, create_session
from bertc.inference.openvino import KIND as OPENVINO
from bertc.inference.openvino import MODEL_FILE, WEIGHTS_FILE, OpenVinoPredictor
from bertc.inference.openvino import compile_model as compile_openvino
from bertc.inference.pytorch import TorchPredictor
from bertc.inference.torch_quantized import KIND, quantize_linear_dynamic
from bertc.modeling import describe_model, encoder_layers


@dataclass
class Source:
    """What a handler quantizes: the model in memory and what running and describing it needs."""

    model: object  # an onnx.ModelProto (ONNX methods), a PyTorch classifier (torch-dynamic), an openvino.Model
    tokenizer: object = None  # runs the model; static calibration tokenizes with it
    task: dict = field(default_factory=dict)  # labels, max_length, columns and recorded data (as in a manifest)
    description: dict = field(default_factory=dict)  # manifest["model"] of the parent (or of its export)
    file: Path | None = None  # the file the graph was read from, if any (not written again)
    export_metrics: dict | None = None  # the verification of an export made in memory from a PyTorch parent


class OnnxHandler:
    """ONNX Runtime methods: the source is an fp32 ONNX graph (the stage exports a PyTorch parent first)."""

    source_kind = "onnx"
    controls_accuracy = False
    op_types: tuple[str, ...] | None = None  # node types the method converts (None: all)

    def __init__(self, source: Source, config: QuantizeConfig, work: Path):
        if not isinstance(source.model, onnx.ModelProto):
            raise BertcError(f"--method {config.method.method} quantizes an ONNX graph (onnx.ModelProto), not a "
                             f"{type(source.model).__name__}; export the model first (bertc.export.onnx.export_)")
        self.config, self.method, self.work = config, config.method, work
        self.variant = self.method.variant
        self.source, self.proto, self.exported = source, source.model, source.export_metrics
        self.reference_name = "onnx fp32" + (" (exported from the parent)" if self.exported else " (the parent)")
        self.source_file = source.file
        if self.source_file is None:  # ONNX Runtime's quantizers and sessions read files
            self.source_file = work / "source.onnx"
            onnx.save_model(self.proto, str(self.source_file))
        self.labels = source.task.get("labels", [])
        self.max_length = source.task.get("max_length", 128)
        self.tokenizer = source.tokenizer
        heads = source.description.get("heads_per_layer")
        self.num_layers = len(heads) if heads is not None else graph.count_layers(self.proto)
        self.node_groups = graph.layer_groups(self.proto, self.num_layers)
        self.count = 0
        self.prepared = None

    def prepared_file(self) -> Path:
        """The source with symbolic shape inference: without the types of fused contrib ops' outputs, static
        quantization silently leaves activations in float (weight-only int8)."""
        if self.prepared is None:
            import onnxruntime
            from onnxruntime.quantization.shape_inference import quant_pre_process

            onnxruntime.set_default_logger_severity(3)
            self.prepared = self.work / "prepared.onnx"
            quant_pre_process(str(self.source_file), str(self.prepared), skip_optimization=True)
        return self.prepared

    @classmethod
    def check_source(cls, src: Path, manifest: dict, method) -> None:
        model = manifest["model"]
        kind, variant = model.get("kind", "pytorch"), model.get("variant", "fp32")
        if kind == "pytorch" or (kind == "onnx" and variant == "fp32"):
            return
        parent = (manifest.get("parent") or {}).get("path", "its parent")
        if kind == OPENVINO:
            raise BertcError(f"{src} holds an OpenVINO model; --method {method.method} is ONNX Runtime's and starts "
                             f"from an fp32 ONNX or a PyTorch artifact: pass {parent}, or quantize {src} with "
                             "--method nncf-int8")
        raise BertcError(f"{src} is already converted ({kind} {variant}); --method {method.method} starts from an "
                         f"fp32 ONNX artifact or a PyTorch one. Pass {parent} instead")

    def reference_predictor(self):
        return self.predictor(self.source_file)

    def predictor(self, file: Path):
        return OnnxPredictor(create_session(file, self.config.device), self.tokenizer, self.labels,
                             self.max_length)

    def groups(self) -> list[str]:
        if self.node_groups is None:
            raise BertcError(self.no_groups())
        types = {node.name: node.op_type for node in self.proto.graph.node}
        present = {group for name, group in self.node_groups.items()
                   if self.op_types is None or types[name] in self.op_types}
        return [g for g in graph.group_order(self.num_layers) if g in present]

    def no_groups(self) -> str:
        """Why no single layer can be kept in float: the graph is quantized as a whole."""
        model_type = self.source.description.get("model_type") or graph.model_type(self.proto)
        if not graph.splits_in_layers(model_type):
            return (f"a {model_type} graph is quantized as a whole: its pre-norm layers cannot be told apart in "
                    "the graph, so no layer can be kept in float; allow more with --max-accuracy-drop, or try "
                    "another --method")
        return (f"cannot tell which encoder layer each node of {self.source_file} belongs to, so no layer can be "
                "kept in float; export with --optimize all (the default)")

    def nodes_in(self, groups: list[str]) -> list[str]:
        if not groups:
            return []
        if self.node_groups is None:  # never quantize what was asked to stay float
            raise BertcError(self.no_groups())
        chosen = set(groups)
        return [name for name, group in (self.node_groups or {}).items() if group in chosen]

    def build(self, float_groups: list[str]) -> Path:
        self.count += 1
        file = self.work / f"candidate-{self.count}.onnx"
        try:
            self.write_candidate(self.nodes_in(float_groups), file)
        except BertcError:
            raise
        except Exception as err:  # onnxruntime.quantization raises assorted types
            raise BertcError(f"ONNX Runtime could not apply --method {self.method.method} to {self.source_file} "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
        return file

    def write_candidate(self, exclude: list[str], file: Path) -> None:
        raise NotImplementedError

    def discard(self, file: Path) -> None:
        file.unlink(missing_ok=True)

    def apply_(self, float_groups: list[str]):
        file = self.build(float_groups)
        self.proto.CopyFrom(onnx.load(str(file)))
        self.discard(file)
        return self.proto

    def save(self, file: Path, float_groups: list[str], directory: Path) -> dict:
        shutil.copy2(file, directory / "model.onnx")
        self.tokenizer.save_pretrained(directory)
        proto = onnx.load(str(file), load_external_data=False)
        types = {}
        for node in proto.graph.node:
            types[node.op_type] = types.get(node.op_type, 0) + 1
        model = dict(self.source.description)
        model.update(variant=self.variant, file="model.onnx", size_bytes=file.stat().st_size,
                     fp32_size_bytes=self.source_file.stat().st_size,
                     quantization={**self.details(), "float_groups": float_groups,
                                   "float_nodes": len(self.nodes_in(float_groups)), "op_types": types})
        return model

    def details(self) -> dict:
        return {"method": self.method.method, "tool": "onnxruntime.quantization"}

    def extra_metrics(self) -> dict:
        if self.exported is None:
            return {}
        return {"export_verification": self.exported["verification"]}


def float_default_type() -> dict:
    # Shape inference cannot type the outputs of fused contrib ops (Attention, SkipLayerNormalization); without
    # a default the quantizer stops with "Unable to find data type".
    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


@register_quantize_handler(DynamicQuantConfig)
class DynamicHandler(OnnxHandler):
    op_types = ("MatMul", "Attention")

    def write_candidate(self, exclude: list[str], file: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(self.prepared_file(), file, op_types_to_quantize=list(self.op_types),
                         per_channel=self.method.per_channel, reduce_range=self.method.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude, extra_options=float_default_type())

    def details(self) -> dict:
        return {**super().details(), "weights": "int8", "activations": "uint8, quantized at run time",
                "per_channel": self.method.per_channel, "reduce_range": self.method.reduce_range,
                "op_types_quantized": list(self.op_types)}


@register_quantize_handler(StaticQuantConfig)
class StaticHandler(OnnxHandler):
    # QDQ has no quantized Attention: the fused attention stays float, the projections and FFN become int8.
    op_types = ("MatMul",)

    def __init__(self, source: Source, config: QuantizeConfig, work: Path):
        super().__init__(source, config, work)
        if self.tokenizer is None:
            raise BertcError("--method static calibrates on tokenized examples; pass the model's tokenizer")
        self.calibration_source, texts, pairs = calibration_texts(self.method, source.task)
        # One example per feed, all right-padded to one length: the Entropy and Percentile calibrators stack
        # every run's outputs into one array, so their shapes must agree.
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, padding="longest",
                                 return_tensors="np")
        names = source.description.get("inputs") or [tensor.name for tensor in self.proto.graph.input]
        self.feeds = [{name: encoded[name][i:i + 1].astype(np.int64) for name in names} for i in range(len(texts))]
        self.cache = work / "calibration.json"

    @classmethod
    def check_source(cls, src: Path, manifest: dict, method) -> None:
        super().check_source(src, manifest, method)
        calibration_texts(method, manifest["task"])  # fail on missing or empty data before any long work

    def write_candidate(self, exclude: list[str], file: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        extra = {**float_default_type(), "CalibPercentile": self.method.percentile}
        # The calibration ranges are cached, so retries with other float layers do not calibrate again.
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
            quantize_static(self.prepared_file(), file, calibration_data_reader=FeedsReader(self.feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(self.op_types),
                            per_channel=self.method.per_channel, reduce_range=self.method.reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                            calibrate_method=methods[self.method.calibration], extra_options=extra,
                            calibration_cache_path=self.cache)
        check_activations_quantized(file, exclude)

    def details(self) -> dict:
        return {**super().details(), "format": "QDQ", "weights": "int8", "activations": "uint8",
                "calibration": self.method.calibration, "calibration_data": self.calibration_source,
                "calibration_samples": len(self.feeds), "per_channel": self.method.per_channel,
                "reduce_range": self.method.reduce_range, "op_types_quantized": list(self.op_types)}


@register_quantize_handler(Fp16Config)
class Fp16Handler(OnnxHandler):
    op_types = None

    def write_candidate(self, exclude: list[str], file: Path) -> None:
        onnx.save_model(to_fp16(copy.deepcopy(self.proto), node_block_list=exclude), str(file))

    def details(self) -> dict:
        return {**super().details(), "tool": "onnxruntime.transformers float16", "io_types": "int64 in, float32 out",
                "intended_device": "cuda"}


@register_quantize_handler(TorchDynamicConfig)
class TorchDynamicHandler:
    """PyTorch dynamic int8 of Linear layers. Saved as the float weights (safetensors, no pickle) plus the
    recipe in the manifest; bertc applies ``quantize_dynamic`` when it loads the artifact (it takes a second)."""

    source_kind = "pytorch"
    controls_accuracy = False
    reference_name = "pytorch fp32 (the parent)"

    def __init__(self, source: Source, config: QuantizeConfig, work: Path):
        if not isinstance(source.model, nn.Module):
            raise BertcError(f"--method torch-dynamic quantizes a PyTorch model, not a {type(source.model).__name__}")
        self.variant = config.method.variant
        self.model, self.tokenizer = source.model, source.tokenizer
        self.labels = source.task.get("labels", [])
        self.max_length = source.task.get("max_length", 128)
        self.linear_groups = linear_groups(self.model)

    @classmethod
    def check_source(cls, src: Path, manifest: dict, method) -> None:
        model = manifest["model"]
        if model.get("kind", "pytorch") != "pytorch":
            raise BertcError(f"{src} holds a {model['kind']} {model.get('variant', '')} model; --method torch-dynamic "
                             "quantizes a PyTorch artifact (e.g. the --out of `bertc finetune` or `bertc prune`)")

    def groups(self) -> list[str]:
        present = set(self.linear_groups.values())
        return [g for g in graph.group_order(len(encoder_layers(self.model))) if g in present]

    def float_modules(self, float_groups: list[str]) -> list[str]:
        return sorted(name for name, group in self.linear_groups.items() if group in set(float_groups))

    def build(self, float_groups: list[str]):
        return quantize_linear_dynamic(copy.deepcopy(self.model), self.float_modules(float_groups))

    def discard(self, model) -> None:
        pass

    def apply_(self, float_groups: list[str]):
        return quantize_linear_dynamic(self.model, self.float_modules(float_groups))

    def reference_predictor(self):
        return self.predictor(self.model)

    def predictor(self, model):
        return TorchPredictor(model, self.tokenizer, self.labels, self.max_length)

    def save(self, model, float_groups: list[str], directory: Path) -> dict:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        description = describe_model(self.model)
        description.update(kind=KIND, variant=self.variant,
                           quantization=recipe(self.float_modules(float_groups), float_groups))
        return description

    def extra_metrics(self) -> dict:
        return {}


@register_quantize_handler(NncfInt8Config)
class NncfInt8Handler:
    """NNCF post-training int8 of an OpenVINO IR (FakeQuantize on activations, int8 weights; OpenVINO's CPU plugin
    runs them as int8). The accuracy budget is NNCF's quantize_with_accuracy_control, not bertc's layer search."""

    source_kind = OPENVINO
    controls_accuracy = True

    def __init__(self, source: Source, config: QuantizeConfig, work: Path):
        if not nncf_int8.is_openvino_model(source.model):
            raise BertcError(f"--method nncf-int8 quantizes an OpenVINO model (openvino.Model), not a "
                             f"{type(source.model).__name__}; export it with `bertc export --openvino` first")
        if source.tokenizer is None:
            raise BertcError("--method nncf-int8 calibrates on tokenized examples; pass the model's tokenizer")
        self.config, self.method, self.variant = config, config.method, config.method.variant
        self.source, self.model, self.tokenizer = source, source.model, source.tokenizer
        self.labels = source.task.get("labels", [])
        self.max_length = source.task.get("max_length", 128)
        self.precision = source.description.get("inference_precision", "f32")
        self.reference_name = f"openvino {self.precision} (the parent)"
        self.names = nncf_int8.input_names(self.model)
        check_calibration_data(self.method, source.task)
        self.calibration_source, texts, pairs = calibration_texts(self.method, source.task)
        self.calibration = nncf_int8.item_feeds(self.tokenizer, texts, pairs, self.names, self.max_length)
        self.validation_samples = 0
        self.messages: list[str] = []

    @classmethod
    def check_source(cls, src: Path, manifest: dict, method) -> None:
        model = manifest["model"]
        kind, variant = model.get("kind", "pytorch"), model.get("variant", "fp32")
        if kind != OPENVINO:
            pytorch = src if kind == "pytorch" else (manifest.get("parent") or {}).get("path", "its PyTorch parent")
            raise BertcError(f"{src} holds a {kind} {variant} model; --method nncf-int8 quantizes an OpenVINO "
                             f"artifact: export with --openvino first (bertc export {pytorch} --openvino --out DIR)")
        if variant not in FLOAT_VARIANTS.values():
            parent = (manifest.get("parent") or {}).get("path", "its parent")
            raise BertcError(f"{src} is already quantized ({variant}); --method nncf-int8 starts from a float "
                             f"OpenVINO artifact (the --out of `bertc export --openvino`). Pass {parent} instead")
        check_calibration_data(method, manifest["task"])

    def build(self, float_groups: list[str]):
        if float_groups:
            raise BertcError("--method nncf-int8 cannot keep named layers in float; with --max-accuracy-drop NNCF "
                             "chooses what stays in float")
        validation, limit = None, self.config.max_accuracy_drop
        if limit is not None:
            samples = verification_samples(self.config.eval_data, self.source.task, self.config.split,
                                           self.config.eval_samples)
            index = {str(label): i for i, label in enumerate(self.labels)}
            feeds = nncf_int8.item_feeds(self.tokenizer, samples.dataset.texts, samples.dataset.pairs, self.names,
                                         self.max_length)
            validation = [(item, index[str(label)]) for item, label in zip(feeds, samples.dataset.labels)]
            self.validation_samples = len(validation)
        model, self.messages = nncf_int8.quantize_ov(self.model, self.calibration, len(self.calibration),
                                                     validation=validation, max_drop_points=limit)
        return model

    def discard(self, model) -> None:
        pass

    def apply_(self, float_groups: list[str]):
        """The quantized model: a new openvino.Model (NNCF leaves its input as it was)."""
        return self.build(float_groups)

    def reference_predictor(self):
        return self.predictor(self.model)

    def predictor(self, model):
        compiled = compile_openvino(model, self.precision, fix="quantize an export made with --inference-precision "
                                                               "f32, or run on a CPU with bf16 support")
        return OpenVinoPredictor(compiled, self.tokenizer, self.labels, self.max_length)

    def save(self, model, float_groups: list[str], directory: Path) -> dict:
        size = nncf_int8.save_ir(model, directory)
        self.tokenizer.save_pretrained(directory)
        limit = self.config.max_accuracy_drop
        control = None if limit is None else {
            "tool": "nncf.quantize_with_accuracy_control", "max_drop_points": limit, "drop_type": "absolute",
            "validation_samples": self.validation_samples}
        versions = nncf_int8.versions()
        parent_files = nncf_int8.ir_files(self.source.file.parent, self.source.description) if self.source.file else []
        description = dict(self.source.description)
        description.update(
            kind=OPENVINO, variant=self.variant, file=MODEL_FILE, weights_file=WEIGHTS_FILE, size_bytes=size,
            fp32_size_bytes=sum(file.stat().st_size for file in parent_files) or None,
            inference_precision=self.precision, openvino_version=versions["openvino_version"],
            quantization={"method": self.method.method, "tool": "nncf", "nncf_version": versions["nncf_version"],
                          "model_type": "transformer", "calibration_data": self.calibration_source,
                          "calibration_samples": len(self.calibration), "seed": self.method.seed,
                          "accuracy_control": control, "float_groups": float_groups,
                          "op_types": nncf_int8.op_counts(model), "nncf_log": self.messages})
        return description

    def extra_metrics(self) -> dict:
        return {}


def check_calibration_data(method, task: dict) -> None:
    """Calibration data must exist before any long work (default: the training data recorded in the task)."""
    path = method.calibration_data or task.get("train_data")
    if path is None or not Path(path).exists():
        where = f"{path} does not exist" if path else "the artifact records no training data"
        raise BertcError(f"--method {method.method} needs calibration data and {where}; pass --calibration-data PATH")
