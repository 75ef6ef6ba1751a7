"""Download-free text augmentation for the training split: random word deletion and random word swap."""

from __future__ import annotations

import random

from bertc.data.config import AugmentConfig
from bertc.data.load import TextDataset


def delete_words(words: list[str], rng: random.Random, p: float) -> list[str]:
    kept = [w for w in words if rng.random() >= p]
    return kept or [rng.choice(words)]


def swap_words(words: list[str], rng: random.Random, p: float) -> list[str]:
    words = list(words)
    for _ in range(max(1, round(p * len(words)))):
        if len(words) < 2:
            break
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return words


STRATEGIES = {"delete": delete_words, "swap": swap_words}


def augment(dataset: TextDataset, config: AugmentConfig) -> TextDataset:
    """The original examples followed by ``factor`` x len(dataset) perturbed copies (labels unchanged)."""
    if not config.strategies or config.factor == 0:
        return dataset
    rng = random.Random(config.seed)
    whole, fraction = int(config.factor), config.factor - int(config.factor)
    texts, pairs, labels = list(dataset.texts), list(dataset.pairs) if dataset.pairs else None, list(
        dataset.labels)
    for i in range(len(dataset)):
        copies = whole + (1 if rng.random() < fraction else 0)
        for _ in range(copies):
            strategy = STRATEGIES[rng.choice(config.strategies)]
            words = dataset.texts[i].split()
            new = " ".join(strategy(words, rng, config.probability))
            if new == dataset.texts[i]:
                continue
            texts.append(new)
            labels.append(dataset.labels[i])
            if pairs is not None:
                pairs.append(dataset.pairs[i])
    return TextDataset(texts=texts, pairs=pairs, labels=labels, source=dataset.source, columns=dataset.columns)
