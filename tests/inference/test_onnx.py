"""The ONNX Runtime predictor on a hand-built graph whose logits are each text's token count and id sum.

Those logits depend only on the real tokens, so they show that batches are right-padded, that only the inputs the
graph declares are fed, and that rows come back in the order of the texts whatever the length-sorted batching.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bertc.artifact import write_manifest
from bertc.errors import BertcError
from bertc.inference.onnx import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxPredictor,
    create_session,
    load_onnx_predictor,
    providers_for,
)
from tests.conftest import tiny_tokenizer

TEXTS = ["good", "the movie was very very boring and the plot was awful", "it is fine", "a sad story",
         "really great acting and a lovely warm story", "bad"]


def counting_graph() -> onnx.ModelProto:
    """logits[i] = [number of real tokens, sum of the real token ids] of row i (int64 inputs, float logits)."""
    batch = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, batch),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, batch)]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids", "mask"], ["real_ids"]),
        helper.make_node("ReduceSum", ["mask", "axes"], ["count"], keepdims=1),
        helper.make_node("ReduceSum", ["real_ids", "axes"], ["total"], keepdims=1),
        helper.make_node("Concat", ["count", "total"], ["logits"], axis=1),
    ]
    model = helper.make_model(helper.make_graph(nodes, "counting", inputs, [output], initializer=[axes]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))[0]


@pytest.fixture(scope="module")
def session():
    return create_session(counting_graph().SerializeToString())


def expected_logits(tokenizer, texts, max_length=128):
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return np.array([[len(row), sum(row)] for row in ids], dtype=np.float32)


def test_providers_for_each_device():
    assert providers_for("cpu", available=[CPU_PROVIDER]) == [CPU_PROVIDER]
    assert providers_for("cuda", available=[CUDA_PROVIDER, CPU_PROVIDER]) == [CUDA_PROVIDER, CPU_PROVIDER]
    with pytest.raises(BertcError) as err:
        providers_for("cuda", available=["AzureExecutionProvider", CPU_PROVIDER])
    message = str(err.value)
    assert "--device cuda needs onnxruntime-gpu" in message and "offers AzureExecutionProvider, CPUExecutionProvider" \
        in message and "\n" not in message
    with pytest.raises(BertcError, match=r"^--device 'tpu' is not one of cpu, cuda$"):
        providers_for("tpu", available=[CPU_PROVIDER])


def test_create_session_refuses_what_onnx_runtime_cannot_load(tmp_path):
    with pytest.raises(BertcError, match=r"^ONNX Runtime could not load the graph built in memory: .*bertc export`$"):
        create_session(b"not a graph")
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(BertcError, match=f"ONNX Runtime could not load {broken}: "):
        create_session(broken)


def test_create_session_from_a_file_with_threads(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(counting_graph(), str(path))
    session = create_session(path, threads=1, spinning=False)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert session.get_providers() == [CPU_PROVIDER]


def test_sessions_spin_only_within_a_run_unless_spinning_is_off(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(counting_graph(), str(path))

    def entry(session, key: str) -> str | None:
        try:
            return session.get_session_options().get_session_config_entry(key)
        except Exception:  # onnxruntime raises when the key was never set
            return None

    spinning = create_session(path, threads=1)
    assert entry(spinning, "session.force_spinning_stop") == "1"
    assert entry(spinning, "session.intra_op.allow_spinning") in (None, "1")
    still = create_session(path, threads=1, spinning=False)
    assert entry(still, "session.intra_op.allow_spinning") == "0"


def test_logits_come_back_in_text_order_from_length_sorted_batches(session, tokenizer):
    predictor = OnnxPredictor(session, tokenizer, ["length", "ids"], batch_size=2)
    np.testing.assert_array_equal(predictor.logits(TEXTS), expected_logits(tokenizer, TEXTS))


def test_truncation_to_max_length(session, tokenizer):
    predictor = OnnxPredictor(session, tokenizer, ["length", "ids"], max_length=4)
    logits = predictor.logits(TEXTS)
    assert logits[:, 0].max() == 4
    np.testing.assert_array_equal(logits, expected_logits(tokenizer, TEXTS, max_length=4))


def test_feeds_are_right_padded_int64_with_only_the_graphs_inputs(session, tokenizer):
    tokenizer.padding_side = "left"  # the fused attention reads the mask as "the first N tokens are real"
    predictor = OnnxPredictor(session, tokenizer, ["length", "ids"])
    feeds = predictor.feeds(["good", "the movie was good"])
    assert set(feeds) == {"input_ids", "attention_mask"}  # the tokenizer's token_type_ids are not fed
    assert all(array.dtype == np.int64 for array in feeds.values())
    assert feeds["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0]
    assert session.run(["logits"], feeds)[0].tolist() == expected_logits(tokenizer, ["good", "the movie was good"]) \
        .tolist()


def test_load_onnx_predictor_reads_labels_and_max_length_from_the_manifest(tmp_path, tokenizer):
    onnx.save(counting_graph(), str(tmp_path / "graph.onnx"))
    tokenizer.save_pretrained(tmp_path)
    manifest = write_manifest(tmp_path, stage="export", config={}, parent=None,
                              model={"kind": "onnx", "file": "graph.onnx"},
                              task={"labels": ["length", "ids"], "max_length": 3})
    predictor = load_onnx_predictor(tmp_path, manifest, batch_size=4)
    assert predictor.labels == ["length", "ids"] and (predictor.max_length, predictor.batch_size) == (3, 4)
    assert predictor.logits(TEXTS)[:, 0].max() == 3
    (tmp_path / "graph.onnx").unlink()
    with pytest.raises(BertcError, match=r"graph.onnx is missing; the artifact is damaged, re-create it"):
        load_onnx_predictor(tmp_path, manifest)
