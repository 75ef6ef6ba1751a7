"""Static int8 calibration: the feeds reader, the seeded calibration sample, and the activation check."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from bertc.errors import BertcError
from bertc.export.calibration import FeedsReader, calibration_texts, check_activations_quantized
from bertc.export.config import StaticQuantConfig


def test_feeds_reader_yields_each_feed_once_then_none_until_rewound():
    feeds = [{"input_ids": i} for i in range(3)]
    reader = FeedsReader(feeds)
    assert [reader.get_next() for _ in range(4)] == [*feeds, None]
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() == feeds[0]


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"sentence number {i}\t{i % 2}\n" for i in range(40)))
    return path


def test_calibration_sample_is_seeded_in_file_order_and_at_most_the_data(train_file):
    task = {"train_data": str(train_file), "text_column": "sentence", "label_column": "label"}
    source, texts, pairs = calibration_texts(StaticQuantConfig(calibration_samples=10, seed=3), task)
    assert source.endswith("train.tsv") and pairs is None and len(texts) == 10
    numbers = [int(text.rsplit(" ", 1)[1]) for text in texts]
    assert numbers == sorted(numbers) and len(set(numbers)) == 10  # a sample, in the file's order
    again = calibration_texts(StaticQuantConfig(calibration_samples=10, seed=3), task)[1]
    other = calibration_texts(StaticQuantConfig(calibration_samples=10, seed=4), task)[1]
    assert again == texts and other != texts
    everything = calibration_texts(StaticQuantConfig(calibration_samples=1000), task)[1]
    assert everything == [f"sentence number {i}" for i in range(40)]


def test_explicit_calibration_data_beats_the_recorded_training_data(train_file, tmp_path):
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\nonly one\t0\nand two\t1\n")
    method = StaticQuantConfig(calibration_data=str(other))
    assert calibration_texts(method, {"train_data": str(train_file)})[1] == ["only one", "and two"]


def test_missing_calibration_data_is_refused_with_what_to_pass(tmp_path):
    with pytest.raises(BertcError, match=r"needs calibration data and the artifact records no training data; "
                                         r"pass --calibration-data PATH"):
        calibration_texts(StaticQuantConfig(), {})
    gone = tmp_path / "gone.tsv"
    with pytest.raises(BertcError, match=f"needs calibration data and {gone} does not exist"):
        calibration_texts(StaticQuantConfig(), {"train_data": str(gone)})


def save_matmuls(path, matmul_inputs: dict[str, str]):
    """MatMul nodes named by the dict's keys, each reading the tensor of the value (a DequantizeLinear output
    when the value is "dq", else a float tensor)."""
    nodes = [helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="dequantize")]
    nodes += [helper.make_node("MatMul", [source, "w"], [f"{name}_out"], name=name)
              for name, source in matmul_inputs.items()]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [], [])), str(path))
    return path


def test_matmuls_reading_dequantized_activations_pass(tmp_path):
    check_activations_quantized(save_matmuls(tmp_path / "m.onnx", {"a": "dq", "b": "dq"}), exclude=[])


def test_a_matmul_left_in_float_is_refused_unless_it_was_excluded(tmp_path):
    path = save_matmuls(tmp_path / "m.onnx", {"a": "dq", "b": "float_input", "c": "float_input"})
    with pytest.raises(BertcError) as err:
        check_activations_quantized(path, exclude=[])
    assert str(err.value).startswith("static quantization left the activations of 2 MatMul nodes in float (e.g. b)")
    assert str(err.value).endswith("Use --method dynamic")
    check_activations_quantized(path, exclude=["b", "c"])  # kept in float on purpose
