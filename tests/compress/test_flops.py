import pytest

from bertc.compress.flops import compare_sizes, layer_flops, model_flops, size_report
from bertc.modeling import count_parameters, encoder_layers, keep_heads_, keep_neurons_, load_pretrained_classifier


@pytest.fixture
def model(tiny_bert_dir):
    return load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])[0]


def test_layer_flops_counts_matrix_products():
    # hidden 4, 2 heads of 2 dims, FFN 8, 3 tokens: 4 projections 2*3*4*4, scores+context 2*3*3*4*2, FFN 2*3*4*8*2
    assert layer_flops(4, 2, 2, 8, 3) == 4 * 96 + 144 + 384
    assert layer_flops(4, 0, 2, 8, 3) == 384  # a layer without attention keeps only its FFN


def test_size_report_drops_with_pruning(model):
    before = size_report(model, seq_len=16)
    assert before["num_parameters"] == count_parameters(model)
    assert before["heads_per_layer"] == [4, 4] and before["ffn_per_layer"] == [64, 64]
    import torch

    keep_heads_(model, encoder_layers(model)[0], [0, 1])
    keep_neurons_(model, encoder_layers(model)[1], torch.arange(32))
    after = size_report(model, seq_len=16)
    ratios = compare_sizes(before, after)
    assert after["heads_per_layer"] == [2, 4] and after["ffn_per_layer"] == [64, 32]
    assert 0 < ratios["flops"] < 1 and 0 < ratios["encoder_parameters"] < 1
    # removed: half the attention of layer 0 and half the FFN of layer 1, exactly as layer_flops counts them
    expected = before["flops"] - (layer_flops(32, 4, 8, 64, 16) - layer_flops(32, 2, 8, 64, 16)) \
        - (layer_flops(32, 4, 8, 64, 16) - layer_flops(32, 4, 8, 32, 16))
    assert after["flops"] == expected == model_flops(model, 16)
