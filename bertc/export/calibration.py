"""Static int8 calibration: the examples ranges are measured on, and the check that activations were quantized."""

from __future__ import annotations

import random
from pathlib import Path

import onnx

from bertc.data.config import Columns
from bertc.data.prepare import read_eval_data
from bertc.errors import BertcError
from bertc.export.config import StaticQuantConfig


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


def calibration_texts(method: StaticQuantConfig, task: dict) -> tuple[str, list[str], list[str] | None]:
    """A seeded random sample of the calibration data (default: the training data recorded in the task)."""
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


def check_activations_quantized(file: Path, exclude: list[str]) -> None:
    """Every MatMul not kept in float must read int8 activations (QDQ): weight-only int8 is a silent failure."""
    proto = onnx.load(str(file), load_external_data=False)
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    skipped = set(exclude)
    float_inputs = [node.name for node in proto.graph.node if node.op_type == "MatMul" and node.name not in skipped
                    and producer.get(node.input[0]) != "DequantizeLinear"]
    if float_inputs:
        raise BertcError(f"static quantization left the activations of {len(float_inputs)} MatMul nodes in float "
                         f"(e.g. {float_inputs[0]}): ONNX Runtime could not type them. Use --method dynamic")
