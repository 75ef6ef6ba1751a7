"""Stratified, seeded train/validation split for when no evaluation set is given."""

from __future__ import annotations

import math
import random
from collections import defaultdict

from bertc.data.load import TextDataset
from bertc.errors import BertcError


def stratified_split(dataset: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    if not 0 < fraction < 1:
        raise BertcError(f"--val-fraction must be in (0, 1), got {fraction}")
    by_label = defaultdict(list)
    for i, label in enumerate(dataset.labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label, key=str):
        indices = by_label[label]
        rng.shuffle(indices)
        n_val = min(len(indices) - 1, max(1, math.floor(len(indices) * fraction + 0.5))) if len(indices) > 1 else 0
        val.extend(indices[:n_val])
        train.extend(indices[n_val:])
    if not val:
        raise BertcError("the data is too small to hold out a validation split; pass --eval PATH")
    return dataset.select(sorted(train)), dataset.select(sorted(val))
