"""Tiny random-weight classifiers of every family bertc knows, with the embedded MiniLM tokenizer (no downloads)."""

from __future__ import annotations

from pathlib import Path

FAMILY_NAMES = ("bert", "distilbert", "deberta-v2", "deberta-v2-unshared", "modernbert")


def family_config(name: str, vocab_size: int, special: dict[str, int]):
    """3 layers, 4 heads of 8, FFN 64 (ModernBERT's GeGLU: 48, so its Wi has 96 rows)."""
    from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ModernBertConfig

    common = dict(vocab_size=vocab_size, max_position_embeddings=128, pad_token_id=special["pad"])
    if name == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, **common)
    if name == "distilbert":
        return DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, **common)
    if name.startswith("deberta-v2"):  # DeBERTa-v3's layout: relative attention, no absolute positions or types
        return DebertaV2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                               relative_attention=True, position_buckets=16, max_relative_positions=-1,
                               pos_att_type=["p2c", "c2p"], share_att_key=name == "deberta-v2",
                               position_biased_input=False, type_vocab_size=0, norm_rel_ebd="layer_norm", **common)
    if name == "modernbert":  # alternating global and local (window 8) attention
        return ModernBertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                                global_attn_every_n_layers=2, local_attention=8, cls_token_id=special["cls"],
                                sep_token_id=special["sep"], bos_token_id=special["cls"],
                                eos_token_id=special["sep"], **common)
    raise ValueError(name)


def make_family_dir(directory: Path, name: str, seed: int = 0, classifier: bool = True, labels=("neg", "pos")):
    """A saved tiny model of family ``name`` (a classifier with random head by default, else the base model)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from bertc.modeling import embedded_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    special = {"pad": tokenizer.pad_token_id, "cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id}
    config = family_config(name, len(tokenizer), special)
    torch.manual_seed(seed)
    if classifier:
        config.id2label = dict(enumerate(labels))
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
