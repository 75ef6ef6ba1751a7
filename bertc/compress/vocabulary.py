"""Vocabulary and position pruning: shrink a model's embeddings to the tokens and input lengths it will serve.

Vocabulary pruning keeps the special tokens, every token the given texts are split into and, optionally, the
tokenizer's N lowest ids. It slices the word-embedding rows and rebuilds the tokenizer with the kept tokens
renumbered in their original order (so [PAD] stays 0). Only WordPiece tokenizers (BERT, ELECTRA...) are pruned:
WordPiece takes the longest vocabulary piece first, so a vocabulary holding every piece a word was split into
splits it the same way again, and a word that needs a dropped piece becomes [UNK]. BPE merges and Unigram scores
give no such guarantee.

Position pruning keeps the first N position embeddings: the longest input, in tokens, the served model reads.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from bertc.data.load import SPLIT_NAMES, find_split_file, resolve_split
from bertc.errors import BertcError
from bertc.inference.evaluation import prediction_texts
from bertc.modeling import base_model, usable_positions

WORDPIECE = "WordPiece"
CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")
ENCODE_BATCH = 1024


def vocabulary_texts(path: str, task: dict) -> list[str]:
    """The texts of a data file (every split of a directory of splits), in the columns the artifact of ``task``
    was trained with when the file has them, else the ones auto-detection finds; both texts of a pair count.
    Labels are not read: the file may be unlabelled."""
    source = Path(path)
    if source.is_dir():
        files = [file for split in SPLIT_NAMES if (file := find_split_file(source, split))]
        files = files or [Path(resolve_split(source, "train"))]  # raises: the directory holds no split file
    else:
        files = [source]
    texts: list[str] = []
    for file in files:
        if file.is_file() and file.stat().st_size == 0:  # pandas cannot parse an empty file at all
            continue
        first, second = prediction_texts(str(file), task)
        texts += first + (second or [])
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise BertcError(f"--vocab DATA has no texts: {path} holds no rows of text; pass a file of the texts the "
                         "model will serve (a text column, one row each)")
    return texts


def prune_vocabulary_(model, tokenizer, texts: list[str], *, keep_top: int = 0) -> tuple[object, dict]:
    """Keep the word embeddings of the special tokens, of the tokens ``texts`` are split into and of the
    ``keep_top`` lowest token ids; returns the rebuilt tokenizer (same class and settings, saves and reloads with
    ``AutoTokenizer``) and a report. The same text gives the same ids, renumbered, so the same predictions.

    WordPiece vocabularies (BERT's vocab.txt) list special and reserved tokens, then single characters, then word
    pieces from the most to the least frequent, so the lowest ids are the tokens most texts need; ``keep_top``
    large enough to cover the characters lets unseen words be spelled in pieces instead of becoming [UNK].
    The report's ``kept_*`` counts do not overlap: they add up to ``tokens_after``."""
    layout = wordpiece_layout(tokenizer)
    if keep_top < 0:
        raise BertcError(f"--vocab-top must be 0 or more, got {keep_top}")
    if not texts:
        raise BertcError("vocabulary pruning got no texts; pass --vocab DATA with the texts the model will serve")
    embeddings = model.get_input_embeddings()
    rows = embeddings.num_embeddings
    special = special_ids(tokenizer, layout, model.config, embeddings.padding_idx)
    from_texts = text_token_ids(tokenizer, texts) - special
    top = {i for i in layout["model"]["vocab"].values() if i < keep_top} - special - from_texts
    kept = sorted(special | from_texts | top)
    if kept[-1] >= rows:
        raise BertcError(f"the tokenizer has token id {kept[-1]} but the model embeds only {rows} tokens; pass the "
                         "tokenizer saved with this model")
    new_id = {old: new for new, old in enumerate(kept)}
    new_tokenizer = rebuilt_tokenizer(tokenizer, layout, new_id)
    keep_embedding_rows_(model, kept, new_id)
    return new_tokenizer, {
        "tokens_before": len(tokenizer), "tokens_after": len(new_tokenizer),
        "kept_special": len(special), "kept_from_texts": len(from_texts), "kept_top": len(top),
        "embedding_parameters_before": embeddings.weight.numel(),
        "embedding_parameters_after": model.get_input_embeddings().weight.numel(),
    }


def wordpiece_layout(tokenizer) -> dict:
    """The fast tokenizer's ``tokenizer.json`` as a dict; refuses anything but a WordPiece fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    layout = json.loads(backend.to_str()) if backend is not None else {}
    kind = layout.get("model", {}).get("type") or ("slow (Python)" if backend is None else "unknown")
    if kind != WORDPIECE:
        raise BertcError(f"vocabulary pruning supports WordPiece tokenizers (BERT, ELECTRA...), not this {kind} "
                         f"{type(tokenizer).__name__}; drop --vocab (the rest of pruning still works)")
    return layout


def special_ids(tokenizer, layout: dict, config, padding_idx: int | None) -> set[int]:
    """Ids every input may need whatever its text: added and special tokens, [UNK], the ids the post-processor
    inserts, the padding id, and the token ids the model's config names."""
    ids = {token["id"] for token in layout.get("added_tokens", [])} | set(tokenizer.all_special_ids)
    ids |= set(map_post_processor_ids(layout.get("post_processor"), lambda i: i))
    model = layout["model"]
    if model.get("unk_token") in model["vocab"]:
        ids.add(model["vocab"][model["unk_token"]])
    if layout.get("padding"):
        ids.add(layout["padding"]["pad_id"])
    ids |= {value for name in CONFIG_TOKEN_IDS
            if isinstance(value := getattr(config, name, None), int) and value < config.vocab_size}
    if padding_idx is not None:
        ids.add(padding_idx)
    return {i for i in ids if i >= 0}


def text_token_ids(tokenizer, texts: list[str]) -> set[int]:
    """The ids the tokenizer splits ``texts`` into, each text whole (no truncation, no padding)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    ids: set[int] = set()
    for start in range(0, len(texts), ENCODE_BATCH):
        for encoding in backend.encode_batch(texts[start:start + ENCODE_BATCH], add_special_tokens=False):
            ids.update(encoding.ids)
    return ids


def map_post_processor_ids(node: dict | None, change: Callable[[int], int]) -> list[int]:
    """Replace every token id a post-processor inserts by ``change(id)``; returns the ids as they were."""
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [i for child in node["processors"] for i in map_post_processor_ids(child, change)]
    found = []
    for special in node.get("special_tokens", {}).values():  # TemplateProcessing
        found += special["ids"]
        special["ids"] = [change(i) for i in special["ids"]]
    for key in ("sep", "cls"):  # BertProcessing: [token, id]
        if isinstance(node.get(key), list):
            found.append(node[key][1])
            node[key][1] = change(node[key][1])
    return found


def rebuilt_tokenizer(tokenizer, layout: dict, new_id: dict[int, int]):
    """``tokenizer`` over the kept tokens only, ids renumbered by ``new_id``. It is saved and reloaded through
    its own class, the way ``AutoTokenizer.from_pretrained`` will load it, so every setting survives a reload."""
    model = layout["model"]
    model["vocab"] = {token: new_id[i] for token, i in model["vocab"].items() if i in new_id}
    layout["added_tokens"] = [{**token, "id": new_id[token["id"]]} for token in layout.get("added_tokens", [])]
    map_post_processor_ids(layout.get("post_processor"), new_id.__getitem__)
    if layout.get("padding"):
        layout["padding"]["pad_id"] = new_id[layout["padding"]["pad_id"]]
    with tempfile.TemporaryDirectory(prefix="bertc-vocab-") as work:
        tokenizer.save_pretrained(work)
        (Path(work) / "tokenizer.json").write_text(json.dumps(layout, ensure_ascii=False), encoding="utf-8")
        rebuilt = type(tokenizer).from_pretrained(work)
    rebuilt.name_or_path = tokenizer.name_or_path
    return rebuilt


def keep_embedding_rows_(model, kept: list[int], new_id: dict[int, int]) -> None:
    """Keep the word-embedding rows ``kept`` and renumber the token ids the config names."""
    old = model.get_input_embeddings()
    padding_idx = new_id[old.padding_idx] if old.padding_idx is not None else None
    new = nn.Embedding(len(kept), old.embedding_dim, padding_idx=padding_idx, device=old.weight.device,
                       dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight.index_select(0, torch.tensor(kept, device=old.weight.device)))
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(kept)
    for name in CONFIG_TOKEN_IDS:
        if isinstance(value := getattr(model.config, name, None), int) and value in new_id:
            setattr(model.config, name, new_id[value])


def truncate_positions_(model, n: int) -> dict:
    """Keep the first ``n`` position embeddings (and the position and token-type buffers that follow them), so the
    model reads inputs of up to ``n`` tokens; RoBERTa-style families keep the rows they reserve below their first
    position as well. Outputs for inputs of ``n`` tokens or fewer do not change."""
    config = model.config
    usable = usable_positions(config)
    if n < 1:
        raise BertcError(f"--max-positions must be at least 1 token, got {n}")
    if n > usable:
        raise BertcError(f"--max-positions {n} is more than the {usable} tokens the model reads; pass "
                         f"--max-positions {usable} or less")
    rows = n + config.max_position_embeddings - usable
    embeddings = base_model(model).embeddings
    old = embeddings.position_embeddings
    new = nn.Embedding(rows, old.embedding_dim, padding_idx=old.padding_idx, device=old.weight.device,
                       dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[:rows])
    new.weight.requires_grad_(old.weight.requires_grad)
    embeddings.position_embeddings = new
    for name in ("position_ids", "token_type_ids"):
        if isinstance(buffer := getattr(embeddings, name, None), torch.Tensor):
            setattr(embeddings, name, buffer[..., :rows].clone())  # stays a (non-persistent) buffer
    config.max_position_embeddings = rows
    return {"positions_before": usable, "positions_after": n,
            "position_parameters_before": old.weight.numel(), "position_parameters_after": new.weight.numel()}
