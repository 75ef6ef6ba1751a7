"""Reading fused BERT graphs: operator counts, layer groups from the LayerNorm sequence, attention head checks.

The graphs are built by hand with onnx.helper in the order ORT's fuser writes them; they are read, never run.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from bertc.errors import BertcError
from bertc.export import graph


def node(op: str, name: str = "", **attributes) -> onnx.NodeProto:
    return helper.make_node(op, inputs=["x"], outputs=[f"{op}_{name}_out"], name=name, **attributes)


def fused_bert(heads: list[int], *, fuse: list[bool] | None = None, embed_norm: str = "EmbedLayerNormalization"):
    """A fused BERT graph: embeddings, per layer [Attention] + MatMul + SkipLN + FFN + SkipLN, a classifier."""
    fuse = fuse or [True] * len(heads)
    nodes = [node("Gather", "word_embeddings"), node(embed_norm, "embed_ln")]
    for i, (h, fused) in enumerate(zip(heads, fuse)):
        if fused:
            nodes.append(node("Attention", f"attention_{i}", num_heads=h))
        else:
            nodes += [node("MatMul", f"q_{i}"), node("Softmax", f"softmax_{i}")]
        nodes += [node("MatMul", f"attention_out_{i}"), node("SkipLayerNormalization", f"ln1_{i}"),
                  node("MatMul", f"ffn_in_{i}"), node("BiasGelu", f"gelu_{i}"), node("MatMul", f"ffn_out_{i}"),
                  node("SkipLayerNormalization", f"ln2_{i}")]
    nodes += [node("Gather", "cls_token"), node("MatMul", "pooler"), node("Tanh", "pooler_act"),
              node("MatMul", "classifier")]
    return helper.make_model(helper.make_graph(nodes, "bert", [], []))


def test_load_graph_reads_a_saved_graph(tmp_path):
    onnx.save(fused_bert([4]), str(tmp_path / "model.onnx"))
    assert graph.op_counts(graph.load_graph(tmp_path / "model.onnx"))["Attention"] == 1


def test_load_graph_reports_a_missing_truncated_or_empty_file_as_damaged(tmp_path):
    with pytest.raises(BertcError, match=r"model.onnx is missing; the artifact is damaged, re-create it"):
        graph.load_graph(tmp_path / "model.onnx")
    data = fused_bert([4]).SerializeToString()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BertcError, match=r"truncated.onnx is damaged \(.+\); re-create the artifact") as err:
        graph.load_graph(tmp_path / "truncated.onnx")
    assert "\n" not in str(err.value)
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(tmp_path / "empty.onnx"))
    with pytest.raises(BertcError, match=r"empty.onnx is damaged \(it holds no graph\)"):
        graph.load_graph(tmp_path / "empty.onnx")


def test_op_counts_lists_every_fused_operator_even_when_absent():
    counts = graph.op_counts(fused_bert([4, 2]))
    assert list(counts) == list(graph.FUSED_OPS)
    assert counts == {"Attention": 2, "MultiHeadAttention": 0, "EmbedLayerNormalization": 1,
                      "SkipLayerNormalization": 4, "LayerNormalization": 0, "BiasGelu": 2, "FastGelu": 0, "Gelu": 0}


def test_name_nodes_names_unnamed_and_duplicate_nodes_only():
    model = helper.make_model(helper.make_graph(
        [node("MatMul", "a"), node("Add"), node("MatMul", "a"), node("Relu", "b"), node("Add")], "g", [], []))
    graph.name_nodes_(model)
    assert [n.name for n in model.graph.node] == ["a", "Add_bertc_1", "MatMul_bertc_2", "b", "Add_bertc_4"]
    graph.name_nodes_(model)  # already unique: nothing changes
    assert [n.name for n in model.graph.node] == ["a", "Add_bertc_1", "MatMul_bertc_2", "b", "Add_bertc_4"]


def test_layer_groups_place_each_node_by_the_layernorms_before_it():
    model = fused_bert([4, 4])
    groups = graph.layer_groups(model, 2)
    assert groups["word_embeddings"] == groups["embed_ln"] == "embeddings"  # a LayerNorm closes its own group
    assert [name for name, group in groups.items() if group == "layer.0"] == [
        "attention_0", "attention_out_0", "ln1_0", "ffn_in_0", "gelu_0", "ffn_out_0", "ln2_0"]
    assert groups["attention_1"] == groups["ln2_1"] == "layer.1"
    assert [name for name, group in groups.items() if group == "classifier"] == [
        "cls_token", "pooler", "pooler_act", "classifier"]
    assert len(groups) == len(model.graph.node)


def test_layer_groups_refuse_a_graph_with_an_unexpected_number_of_layernorms():
    assert graph.layer_groups(fused_bert([4, 4]), 3) is None
    plain = fused_bert([4], embed_norm="Add")  # an unfused embedding: one LayerNorm missing
    assert graph.layer_groups(plain, 1) is None
    assert graph.count_layers(plain) == 0


def test_count_layers_and_group_order():
    assert graph.count_layers(fused_bert([4, 4, 4])) == 3
    assert graph.count_layers(fused_bert([4], embed_norm="LayerNormalization")) == 1
    assert graph.count_layers(helper.make_model(helper.make_graph([], "empty", [], []))) == 0
    assert graph.group_order(2) == ["embeddings", "layer.0", "layer.1", "classifier"]


def test_attribute_reads_a_value_or_the_default():
    attention = node("Attention", "a", num_heads=6)
    assert graph.attribute(attention, "num_heads") == 6
    assert graph.attribute(attention, "unidirectional", default=0) == 0


def test_check_attention_reports_each_fused_node_with_its_layer():
    check = graph.check_attention(fused_bert([4, 2]), [4, 2])
    assert check == {"attention_layers": 2, "fused_attention": 2, "complete": True, "nodes": [
        {"node": "attention_0", "layer": 0, "num_heads": 4}, {"node": "attention_1", "layer": 1, "num_heads": 2}]}


def test_check_attention_counts_layers_without_heads_as_nothing_to_fuse():
    model = fused_bert([4, 0], fuse=[True, False])  # layer 1 lost all its heads
    check = graph.check_attention(model, [4, 0])
    assert (check["attention_layers"], check["fused_attention"], check["complete"]) == (1, 1, True)


def test_too_few_fused_nodes_are_reported_not_raised():
    check = graph.check_attention(fused_bert([4, 4], fuse=[True, False]), [4, 4])
    assert (check["attention_layers"], check["fused_attention"], check["complete"]) == (2, 1, False)


def test_a_wrong_head_count_in_a_layer_is_an_error():
    with pytest.raises(BertcError) as err:
        graph.check_attention(fused_bert([4, 4]), [4, 2])
    message = str(err.value)
    assert "attention_1 in layer 1 has num_heads=4, the layer has 2" in message and "\n" not in message
    assert "--optimize basic" in message


def test_without_layer_groups_the_multiset_of_head_counts_is_checked():
    unplaced = fused_bert([4, 2], embed_norm="Add")  # no embedding LayerNorm: nodes cannot be placed
    assert [n["layer"] for n in graph.check_attention(unplaced, [2, 4])["nodes"]] == [None, None]  # same multiset
    with pytest.raises(BertcError, match=r"fused head counts \[2, 4\] differ from the model's \[4, 4\]"):
        graph.check_attention(unplaced, [4, 4])
