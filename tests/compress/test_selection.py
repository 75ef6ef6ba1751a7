"""What a pruning step keeps, on hand-made importance scores."""

import math

import pytest
import torch

from bertc.compress.config import PruneConfig
from bertc.compress.importance import ImportanceScores
from bertc.compress.selection import (
    choose_heads,
    choose_layers,
    choose_neurons,
    layer_drops_needed,
    normalized,
    step_target,
    top_indices,
)
from bertc.errors import BertcError


def scores(heads, ffn=None, layer_order=None) -> ImportanceScores:
    ffn = ffn if ffn is not None else [[float(i) for i in range(8)] for _ in heads]
    return ImportanceScores(method="gradient", heads=heads, ffn=ffn, layer_order=layer_order)


def start_of(heads_now, ffn_now):
    return {"heads": list(heads_now), "ffn": list(ffn_now)}


@pytest.mark.parametrize("current, final, steps_left, expected", [
    (12, 6, 1, 6),  # the last step goes all the way
    (12, 6, 2, 9),  # an equal share of the remaining way
    (12, 6, 3, 10),
    (6, 6, 2, 6),
    (4, 8, 2, 4),  # never grows
])
def test_step_target_moves_an_equal_share_of_the_remaining_way(current, final, steps_left, expected):
    assert step_target(current, final, steps_left) == expected


def test_iterative_targets_reach_the_final_size():
    size = 12
    for steps_left in (3, 2, 1):
        size = step_target(size, 3, steps_left)
    assert size == 3


def test_layer_drops_are_needed_only_for_importance_ranked_layers():
    assert layer_drops_needed(PruneConfig(layers=2), 6, 2) == 2
    assert layer_drops_needed(PruneConfig(layers=2), 6, 1) == 4
    assert layer_drops_needed(PruneConfig(layers=2, layer_strategy="top"), 6, 1) == 0
    assert layer_drops_needed(PruneConfig(heads=2), 6, 1) == 0


def test_choose_layers_by_strategy():
    four = scores([[1.0]] * 4, layer_order=[2, 0, 3, 1])
    origins = [0, 1, 2, 3]
    assert choose_layers(PruneConfig(layers=2), four, origins, 1) == [1, 3]  # the two ablated first are dropped
    assert choose_layers(PruneConfig(layers=2, layer_strategy="top"), four, origins, 1) == [0, 1]
    assert choose_layers(PruneConfig(layers=2, layer_strategy="alternate"), four, origins, 1) == [1, 3]
    assert choose_layers(PruneConfig(heads=1), four, origins, 1) == origins
    # --drop-layers names layers of the starting model, even after earlier steps removed some
    assert choose_layers(PruneConfig(drop_layers=(3,)), scores([[1.0]] * 3), [0, 2, 3], 1) == [0, 1]
    with pytest.raises(BertcError, match="layer importance was not measured"):
        choose_layers(PruneConfig(layers=2), scores([[1.0]] * 4, layer_order=[2]), origins, 1)


def test_choose_heads_per_layer_and_across_layers():
    heads = [[0.1, 0.9, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]]
    kept = choose_heads(PruneConfig(heads=2), scores(heads), [4, 4], [0, 1], [0, 1], start_of([4, 4], [8, 8]), 1)
    assert kept == {0: [1, 2], 1: [0, 1]}
    halfway = choose_heads(PruneConfig(heads=2), scores(heads), [4, 4], [0, 1], [0, 1], start_of([4, 4], [8, 8]), 2)
    assert halfway == {0: [1, 2, 3], 1: [0, 1, 2]}
    # ranked across layers after dividing by each layer's L2 norm: layer 1's heads are not drowned out
    kept = choose_heads(PruneConfig(heads_global=3), scores(heads), [4, 4], [0, 1], [0, 1],
                        start_of([4, 4], [8, 8]), 1)
    assert kept == {0: [1], 1: [0, 1]}
    share = choose_heads(PruneConfig(heads_global_ratio=0.25), scores(heads), [4, 4], [0, 1], [0, 1],
                         start_of([4, 4], [8, 8]), 1)
    assert sum(map(len, share.values())) == 2
    everything = choose_heads(PruneConfig(ffn=0.5), scores(heads), [4, 4], [1], [0, 1], start_of([4, 4], [8, 8]), 1)
    assert everything == {1: [0, 1, 2, 3]}  # only kept layers, nothing pruned without a head target


def test_choose_neurons_keeps_the_best_share_of_the_starting_size():
    ffn = [[5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 7.0, 6.0]]
    kept = choose_neurons(PruneConfig(ffn=0.5), scores([[1.0]], ffn), [8], [0], [0], start_of([1], [8]), 1)
    assert torch.equal(kept[0], torch.tensor([0, 2, 6, 7])) and kept[0].dtype == torch.long
    # after an earlier step left 6 neurons, --ffn 0.25 still means a quarter of the starting 8
    kept = choose_neurons(PruneConfig(ffn=0.25), scores([[1.0]], [ffn[0][:6]]), [6], [0], [0], start_of([1], [8]), 1)
    assert kept[0].tolist() == [0, 2]
    kept = choose_neurons(PruneConfig(ffn_size=3), scores([[1.0]], ffn), [8], [0], [0], start_of([1], [8]), 1)
    assert kept[0].tolist() == [0, 6, 7]
    kept = choose_neurons(PruneConfig(heads=1), scores([[1.0]], ffn), [8], [0], [0], start_of([1], [8]), 1)
    assert kept[0].tolist() == list(range(8))


def test_top_indices_are_ascending_and_ties_keep_the_lower_index():
    assert top_indices([0.1, 0.5, 0.5, 0.9], 2) == [1, 3]
    assert top_indices([3.0, 1.0, 2.0], 0) == [] and top_indices([3.0, 1.0, 2.0], 5) == [0, 1, 2]


def test_normalized_divides_by_the_l2_norm():
    values = normalized([3.0, 4.0])
    assert values == [pytest.approx(0.6), pytest.approx(0.8)]
    assert math.isclose(sum(v * v for v in values), 1.0)
    assert normalized([0.0, 0.0]) == [0.0, 0.0]
