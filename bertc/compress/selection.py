"""What a pruning step keeps: the layers, heads and FFN neurons that importance rates highest.

Targets refer to the model pruning started from (``start``: its heads and FFN sizes per layer; ``origins``: its
index of each current layer). Iterative pruning moves an equal share of the remaining way each step.
"""

from __future__ import annotations

import math

import torch

from bertc.compress.config import PruneConfig, parse_layer_spec
from bertc.compress.importance import ImportanceScores
from bertc.errors import BertcError
from bertc.modeling import every_other_layer


def step_target(current: int, final: int, steps_left: int) -> int:
    """Move an equal share of the remaining way from ``current`` to ``final`` (all of it in the last step)."""
    if final >= current:
        return current
    return round(current - (current - final) / steps_left)


def layer_drops_needed(config: PruneConfig, num_layers: int, steps_left: int) -> int:
    """Rounds of greedy layer ablation this step needs (only for --layers with the importance strategy)."""
    if config.layers is None or config.layer_strategy != "importance":
        return 0
    return num_layers - step_target(num_layers, config.layers, steps_left)


def choose_layers(config: PruneConfig, scores: ImportanceScores, origins: list[int], steps_left: int) -> list[int]:
    n = len(origins)
    if config.drop_layers:
        return [i for i in range(n) if origins[i] not in set(config.drop_layers)]
    if config.layers is None:
        return list(range(n))
    target = step_target(n, config.layers, steps_left)
    if target >= n:
        return list(range(n))
    if config.layer_strategy == "top":
        return list(range(target))
    if config.layer_strategy == "alternate":
        return every_other_layer(n, target)
    order = scores.layer_order or []
    if len(order) < n - target:
        raise BertcError("layer importance was not measured for this many layers; pass data with --data, or "
                         "--layer-strategy top or alternate")
    dropped = set(order[:n - target])
    return [i for i in range(n) if i not in dropped]


def spec_targets(spec: str | None, start_sizes: list[int], flag_name: str, what: str,
                 minimum: int = 0) -> list[int] | None:
    """Each starting layer's final size under a per-layer spec ('12,12,8' or '-1:8'); None without a spec."""
    if spec is None:
        return None
    every, named = parse_layer_spec(spec, flag_name)
    n = len(start_sizes)
    if every is not None:
        if len(every) != n:
            raise BertcError(f"{flag_name} {spec} gives {len(every)} sizes but the model has {n} layers; give {n} "
                             "sizes, or name layers such as -1:8")
        targets = every
    else:
        outside = [layer for layer in named if not -n <= layer < n]
        if outside:
            raise BertcError(f"{flag_name} {spec} names layer {outside[0]} but the model has layers 0 to {n - 1} "
                             f"(or -1 to -{n} from the last)")
        targets = list(start_sizes)
        for layer, size in named.items():
            targets[layer] = size
    for i, (target, size) in enumerate(zip(targets, start_sizes)):
        if target > size:
            raise BertcError(f"{flag_name} {spec} keeps {target} {what} in layer {i}, which has {size}; pass "
                             f"{minimum} to {size}")
        if target < minimum:
            raise BertcError(f"{flag_name} {spec} keeps {target} {what} in layer {i}; keep at least {minimum}")
    return targets


def choose_heads(config, scores, heads_now, kept_layers, origins, start, steps_left) -> dict[int, list[int]]:
    """Head indices to keep in each kept layer."""
    keep = {i: list(range(heads_now[i])) for i in kept_layers}
    targets = spec_targets(config.heads_per_layer, start["heads"], "--heads-per-layer", "heads")
    if targets is not None:
        for i in kept_layers:
            target = step_target(heads_now[i], min(targets[origins[i]], heads_now[i]), steps_left)
            keep[i] = top_indices(scores.heads[i], target)
    elif config.heads is not None:
        for i in kept_layers:
            target = step_target(heads_now[i], min(config.heads, heads_now[i]), steps_left)
            keep[i] = top_indices(scores.heads[i], target)
    elif config.heads_global is not None or config.heads_global_ratio is not None:
        total = sum(heads_now[i] for i in kept_layers)
        if config.heads_global is not None:
            final = min(config.heads_global, total)
        else:
            final = max(1, round(config.heads_global_ratio * sum(start["heads"][origins[i]] for i in kept_layers)))
        target = step_target(total, min(final, total), steps_left)
        ranked = sorted(((-score, i, h) for i in kept_layers for h, score in enumerate(normalized(scores.heads[i]))))
        chosen = {(i, h) for _, i, h in ranked[:target]}
        keep = {i: [h for h in range(heads_now[i]) if (i, h) in chosen] for i in kept_layers}
    return keep


def choose_neurons(config, scores, ffn_now, kept_layers, origins, start, steps_left) -> dict[int, torch.Tensor]:
    """Intermediate neuron indices to keep in each kept layer."""
    keep = {}
    targets = spec_targets(config.ffn_per_layer, start["ffn"], "--ffn-per-layer", "FFN neurons", minimum=1)
    for i in kept_layers:
        size = ffn_now[i]
        if targets is not None:
            final = min(targets[origins[i]], size)
        elif config.ffn_size is not None:
            final = min(config.ffn_size, size)
        elif config.ffn is not None:
            final = min(size, max(1, round(config.ffn * start["ffn"][origins[i]])))
        else:
            final = size
        keep[i] = torch.tensor(top_indices(scores.ffn[i], step_target(size, final, steps_left)), dtype=torch.long)
    return keep


def choose_hidden(config, scores, hidden_now: int, head_dim: int, steps_left: int) -> torch.Tensor | None:
    """Hidden channels to keep (None: keep all). Iterative steps stop at multiples of the head size."""
    if config.hidden is None or config.hidden >= hidden_now:
        return None
    target = step_target(hidden_now, config.hidden, steps_left)
    target = min(hidden_now, math.ceil(target / head_dim) * head_dim)
    if target >= hidden_now:
        return None
    return torch.tensor(top_indices(scores.hidden, target), dtype=torch.long)


def top_indices(scores: list[float], k: int) -> list[int]:
    """The ``k`` highest-scoring indices in ascending order (ties: the lower index wins)."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def normalized(scores: list[float]) -> list[float]:
    """Scores divided by their layer's L2 norm, so layers compare fairly (Michel et al. 2019)."""
    norm = math.sqrt(sum(s * s for s in scores))
    return [s / norm if norm > 0 else 0.0 for s in scores]
