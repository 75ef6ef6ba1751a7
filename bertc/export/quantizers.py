"""The work behind each `bertc quantize` method: build a candidate with some layer groups kept in float, run it,
and save the chosen one. ``bertc.export.quantize.search`` drives them through the same small interface:

    handler.groups() -> ["embeddings", "layer.0", ..., "classifier"]   groups the method quantizes
    handler.build(float_groups) -> candidate                           quantize all other groups
    handler.predictor(candidate), handler.reference_predictor()        run a candidate / the parent
    handler.save(candidate, float_groups, directory) -> manifest["model"]
"""

from __future__ import annotations

import contextlib
import copy
import io
import random
import shutil
from pathlib import Path

import numpy as np

from bertc.artifact import load_model, load_tokenizer, read_manifest
from bertc.errors import BertcError
from bertc.export import graph
from bertc.export.config import (
    METHODS,
    DynamicQuantConfig,
    Fp16Config,
    QuantizeConfig,
    StaticQuantConfig,
    TorchDynamicConfig,
)


class OnnxHandler:
    """ONNX Runtime methods: the parent is an fp32 ONNX artifact (a PyTorch one is exported first)."""

    op_types: tuple[str, ...] | None = None  # node types the method converts (None: all)

    def __init__(self, src: Path, manifest: dict, config: QuantizeConfig, work: Path):
        import onnx

        self.config, self.method, self.work = config, config.method, work
        self.variant = METHODS[type(config.method)]
        self.exported = None
        if manifest["model"].get("kind", "pytorch") == "pytorch":
            from bertc.export.config import ExportConfig
            from bertc.export.onnx import export

            src = export(src, ExportConfig(data=config.eval_data, split=config.split,
                                           verify_samples=config.eval_samples, device=config.device), work / "fp32")
            self.exported = read_manifest(src)
            manifest = self.exported
        self.reference_name = "onnx fp32" + (" (exported from the parent)" if self.exported else " (the parent)")
        self.source, self.source_manifest = src, manifest
        self.source_file = src / manifest["model"].get("file", "model.onnx")
        self.proto = onnx.load(str(self.source_file))
        self.labels = manifest["task"]["labels"]
        self.max_length = manifest["task"].get("max_length", 128)
        self.tokenizer = load_tokenizer(src)
        self.node_groups = graph.layer_groups(self.proto, len(manifest["model"]["heads_per_layer"]))
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
        raise BertcError(f"{src} is already converted ({kind} {variant}); --method {method.method} starts from an "
                         f"fp32 ONNX artifact or a PyTorch one. Pass {parent} instead")

    def reference_predictor(self):
        return self.predictor(self.source_file)

    def predictor(self, file: Path):
        from bertc.export.runtime import OnnxPredictor, create_session

        return OnnxPredictor(create_session(file, self.config.device), self.tokenizer, self.labels,
                             self.max_length)

    def groups(self) -> list[str]:
        if self.node_groups is None:
            raise BertcError(f"cannot tell which encoder layer each node of {self.source_file} belongs to, so "
                             "no layer can be kept in float; export with --optimize all (the default)")
        types = {node.name: node.op_type for node in self.proto.graph.node}
        present = {group for name, group in self.node_groups.items()
                   if self.op_types is None or types[name] in self.op_types}
        return [g for g in graph.group_order(len(self.source_manifest["model"]["heads_per_layer"])) if g in present]

    def nodes_in(self, groups: list[str]) -> list[str]:
        if not groups:
            return []
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

    def save(self, file: Path, float_groups: list[str], directory: Path) -> dict:
        import onnx

        shutil.copy2(file, directory / "model.onnx")
        self.tokenizer.save_pretrained(directory)
        proto = onnx.load(str(file), load_external_data=False)
        types = {}
        for node in proto.graph.node:
            types[node.op_type] = types.get(node.op_type, 0) + 1
        model = dict(self.source_manifest["model"])
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
        return {"export_verification": self.exported["metrics"]["verification"]}


def float_default_type() -> dict:
    import onnx

    # Shape inference cannot type the outputs of fused contrib ops (Attention, SkipLayerNormalization); without
    # a default the quantizer stops with "Unable to find data type".
    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


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


class FeedsReader:
    """An onnxruntime CalibrationDataReader over prepared input dicts (one example each: no padding)."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.position = feeds, 0

    def get_next(self) -> dict | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


class StaticHandler(OnnxHandler):
    # QDQ has no quantized Attention: the fused attention stays float, the projections and FFN become int8.
    op_types = ("MatMul",)

    def __init__(self, src: Path, manifest: dict, config: QuantizeConfig, work: Path):
        super().__init__(src, manifest, config, work)
        self.calibration_source, texts, pairs = calibration_texts(self.method, self.source_manifest["task"])
        # One example per feed, all right-padded to one length: the Entropy and Percentile calibrators stack
        # every run's outputs into one array, so their shapes must agree.
        encoded = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, padding="longest",
                                 return_tensors="np")
        names = self.source_manifest["model"]["inputs"]
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


def check_activations_quantized(file: Path, exclude: list[str]) -> None:
    """Every MatMul not kept in float must read int8 activations (QDQ): weight-only int8 is a silent failure."""
    import onnx

    proto = onnx.load(str(file), load_external_data=False)
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    skipped = set(exclude)
    float_inputs = [node.name for node in proto.graph.node if node.op_type == "MatMul" and node.name not in skipped
                    and producer.get(node.input[0]) != "DequantizeLinear"]
    if float_inputs:
        raise BertcError(f"static quantization left the activations of {len(float_inputs)} MatMul nodes in float "
                         f"(e.g. {float_inputs[0]}): ONNX Runtime could not type them. Use --method dynamic")


def calibration_texts(method: StaticQuantConfig, task: dict) -> tuple[str, list[str], list[str] | None]:
    """A seeded random sample of the calibration data (default: the training data recorded in the task)."""
    from bertc.data.config import Columns
    from bertc.data.prepare import read_eval_data

    path = method.calibration_data or task.get("train_data")
    if path is None or not Path(path).exists():
        where = f"{path} does not exist" if path else "the artifact records no training data"
        raise BertcError(f"--method static needs calibration data and {where}; pass --calibration-data PATH")
    columns = Columns(task.get("text_column"), task.get("text_pair_column"), task.get("label_column"))
    dataset, _ = read_eval_data(str(path), columns, split="train")
    chosen = sorted(random.Random(method.seed).sample(range(len(dataset)), min(method.calibration_samples,
                                                                               len(dataset))))
    dataset = dataset.select(chosen)
    return dataset.source, dataset.texts, dataset.pairs


class Fp16Handler(OnnxHandler):
    op_types = None

    def write_candidate(self, exclude: list[str], file: Path) -> None:
        import onnx

        from bertc.export.onnx import to_fp16

        onnx.save_model(to_fp16(copy.deepcopy(self.proto), node_block_list=exclude), str(file))

    def details(self) -> dict:
        return {**super().details(), "tool": "onnxruntime.transformers float16", "io_types": "int64 in, float32 out",
                "intended_device": "cuda"}


class TorchDynamicHandler:
    """PyTorch dynamic int8 of Linear layers. Saved as the float weights (safetensors, no pickle) plus the
    recipe in the manifest; bertc applies ``quantize_dynamic`` when it loads the artifact (it takes a second)."""

    reference_name = "pytorch fp32 (the parent)"
    variant = METHODS[TorchDynamicConfig]

    def __init__(self, src: Path, manifest: dict, config: QuantizeConfig, work: Path):
        from bertc.export.torch_dynamic import linear_groups

        self.model = load_model(src)
        self.tokenizer = load_tokenizer(src)
        self.labels = manifest["task"]["labels"]
        self.max_length = manifest["task"].get("max_length", 128)
        self.linear_groups = linear_groups(self.model)

    @classmethod
    def check_source(cls, src: Path, manifest: dict, method) -> None:
        model = manifest["model"]
        if model.get("kind", "pytorch") != "pytorch":
            raise BertcError(f"{src} holds a {model['kind']} {model.get('variant', '')} model; --method torch-dynamic "
                             "quantizes a PyTorch artifact (e.g. the --out of `bertc finetune` or `bertc prune`)")

    def groups(self) -> list[str]:
        from bertc.modeling import encoder_layers

        present = set(self.linear_groups.values())
        return [g for g in graph.group_order(len(encoder_layers(self.model))) if g in present]

    def float_modules(self, float_groups: list[str]) -> list[str]:
        return sorted(name for name, group in self.linear_groups.items() if group in set(float_groups))

    def build(self, float_groups: list[str]):
        from bertc.export.torch_dynamic import quantize_linear_dynamic

        return quantize_linear_dynamic(copy.deepcopy(self.model), self.float_modules(float_groups))

    def discard(self, model) -> None:
        pass

    def reference_predictor(self):
        return self.predictor(self.model)

    def predictor(self, model):
        from bertc.inference import TorchPredictor

        return TorchPredictor(model, self.tokenizer, self.labels, self.max_length)

    def save(self, model, float_groups: list[str], directory: Path) -> dict:
        from bertc.export.torch_dynamic import KIND, recipe
        from bertc.modeling import describe_model

        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        description = describe_model(self.model)
        description.update(kind=KIND, variant=self.variant,
                           quantization=recipe(self.float_modules(float_groups), float_groups))
        return description

    def extra_metrics(self) -> dict:
        return {}


METHOD_HANDLERS = {DynamicQuantConfig: DynamicHandler, StaticQuantConfig: StaticHandler, Fp16Config: Fp16Handler,
                   TorchDynamicConfig: TorchDynamicHandler}
