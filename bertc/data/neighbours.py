"""TinyBERT-style augmentation without downloads: words replaced by their nearest neighbours in a model's own
input-embedding space (cosine similarity), drawn with a seed.

A word is what the tokenizer's pre-tokenizer calls one (BERT splits punctuation off). Only words that are a single
token are replaced (TinyBERT looks longer words up in GloVe; we keep them), and only by tokens that are whole words
themselves: never special tokens, ``##`` continuation pieces, byte-level pieces that do not start a word,
punctuation or ``[unused]`` slots.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from bertc.errors import BertcError

SIMILARITY_BATCH = 1024  # source tokens per similarity matrix: 1024 x 30k floats is 120 MB
SAME_WORD_SPARE = 8  # extra neighbours fetched, since case variants of the word itself are dropped afterwards


@dataclass
class NeighbourTable:
    """The word tokens of a vocabulary and, computed on demand, each one's nearest word tokens."""

    words: dict[int, str]  # token id -> the word it spells, for every token that is a whole word
    embeddings: torch.Tensor  # unit-length rows for the word tokens, in the order of `ids`
    ids: torch.Tensor  # the word tokens' ids
    count: int  # neighbours kept per token
    found: dict[int, list[str]] = field(default_factory=dict)

    def neighbours(self, token: int) -> list[str]:
        return self.found[token]

    def compute(self, tokens) -> None:
        """Find the neighbours of ``tokens`` not yet known, a batch of cosine similarities at a time."""
        missing = sorted(set(tokens) - self.found.keys())
        ids = self.ids.tolist()
        position = {token: row for row, token in enumerate(ids)}
        wanted = min(self.count + SAME_WORD_SPARE, len(self.ids) - 1)
        for start in range(0, len(missing), SIMILARITY_BATCH):
            batch = missing[start:start + SIMILARITY_BATCH]
            rows = torch.tensor([position[token] for token in batch], device=self.embeddings.device)
            with torch.no_grad():
                similarity = self.embeddings[rows] @ self.embeddings.T
                similarity[torch.arange(len(batch), device=rows.device), rows] = -torch.inf  # never the token itself
                nearest = similarity.topk(wanted, dim=1).indices.cpu() if wanted > 0 else None
            for i, token in enumerate(batch):
                own = self.words[token].lower()
                candidates = [] if nearest is None else (self.words[ids[j]] for j in nearest[i].tolist())
                self.found[token] = [word for word in candidates if word.lower() != own][:self.count]


def neighbour_table(tokenizer, input_embeddings: torch.Tensor, count: int) -> NeighbourTable:
    """The vocabulary's word tokens, with unit-length embeddings, ready to find ``count`` neighbours each."""
    if not getattr(tokenizer, "is_fast", False):
        raise BertcError("embedding-neighbour augmentation needs a fast tokenizer (a tokenizer.json beside the "
                         "teacher); add one, or leave --augment-copies at 0")
    words = word_tokens(tokenizer, min(len(tokenizer), input_embeddings.shape[0]))
    ids = torch.tensor(sorted(words), dtype=torch.long)
    with torch.no_grad():
        rows = input_embeddings.detach()[ids.to(input_embeddings.device)].float()
        unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return NeighbourTable(words=words, embeddings=unit, ids=ids, count=count)


def word_tokens(tokenizer, size: int) -> dict[int, str]:
    """Token id -> word for the tokens that spell a whole word of letters or digits: written after a space the
    word tokenizes to exactly that token (so ``##ing``, a byte-level piece that never starts a word and
    ``[unused0]`` do not), and it is no special token."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(size) if i not in special]
    spelled = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)
    words = {i: text.strip() for i, text in zip(ids, spelled) if text.strip().isalnum()}
    again = tokenizer([" " + word for word in words.values()], add_special_tokens=False)["input_ids"]
    return {i: word for (i, word), tokens in zip(words.items(), again) if tokens == [i]}


def replaceable_words(texts: list[str], tokenizer, words: dict[int, str]) -> list[list[tuple[int, int, int]]]:
    """For each text, its words that are one word token: (start, end, token) with offsets into the text.
    Each text is tokenised after a space, so its first word tokenises as every other word does (byte-level BPE
    marks the start of a word with the space before it)."""
    encoded = tokenizer([" " + text for text in texts], add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)
    found = []
    for i, text in enumerate(texts):
        ids, offsets, word_ids = encoded["input_ids"][i], encoded["offset_mapping"][i], encoded.word_ids(i)
        tokens_of: dict[int, list[int]] = {}
        for position, word in enumerate(word_ids):
            tokens_of.setdefault(word, []).append(position)
        spans = []
        for word, positions in tokens_of.items():
            if word is None or len(positions) != 1 or ids[positions[0]] not in words:
                continue
            start, end = offsets[positions[0]]
            while start < end and (start == 0 or text[start - 1].isspace()):  # a space some tokenizers count in
                start += 1
            if end > start:
                spans.append((start - 1, end - 1, ids[positions[0]]))  # offsets count the leading space
        found.append(spans)
    return found


def match_case(original: str, replacement: str) -> str:
    """The replacement written in the original's case (an uncased vocabulary gives lower-case words)."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def neighbour_augment(texts: list[str], tokenizer, input_embeddings: torch.Tensor, *, copies: int,
                      probability: float, neighbours: int, seed: int) -> list[str]:
    """``copies`` augmented versions of each text, in order (text by text, copy by copy): each word that is a
    single word token is replaced, with ``probability``, by one of its ``neighbours`` nearest word tokens in
    ``input_embeddings`` (the model's word-embedding matrix, rows indexed by token id), drawn uniformly.

    Copies identical to their text or to an earlier copy of it are dropped. The same texts, embeddings and seed
    give the same copies: the draws depend only on the seed and the texts' words.
    """
    if copies < 1 or not texts:
        return []
    table = neighbour_table(tokenizer, input_embeddings, neighbours)
    spans_of = replaceable_words(texts, tokenizer, table.words)
    table.compute(token for spans in spans_of for _, _, token in spans)
    rng = random.Random(seed)
    augmented = []
    for text, spans in zip(texts, spans_of):
        made = {text}
        for _ in range(copies):
            pieces, done = [], 0
            for start, end, token in spans:
                replace, pick = rng.random() < probability, rng.random()  # always two draws a word
                options = table.neighbours(token)
                if replace and options:
                    word = options[int(pick * len(options))]
                    pieces += [text[done:start], match_case(text[start:end], word)]
                    done = end
            copy = "".join(pieces) + text[done:]
            if copy not in made:
                made.add(copy)
                augmented.append(copy)
    return augmented
