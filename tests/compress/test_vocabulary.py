import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    RobertaTokenizer,
    XLMRobertaTokenizer,
)
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from bertc.compress.vocabulary import prune_vocabulary_, truncate_positions_, vocabulary_texts
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export_, labels_task
from bertc.export.verify import Samples
from bertc.modeling import embedded_model_path, load_classifier, usable_positions

TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad"]
# Words the real MiniLM vocabulary splits into several pieces, with punctuation, capitals and accents.
REAL_TEXTS = ["An unbelievably GOOD film, honestly!", "café prices skyrocketed (again)", "the tokenizer's pieces",
              "Photosynthesis isn't overrated.", "x-ray 1984 gigawatts"]


def classifier(directory, **kwargs):
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=2, **kwargs)
    return model.eval()


def logits(model, tokenizer, texts, pairs=None):
    with torch.no_grad():
        return model(**tokenizer(texts, pairs, padding=True, return_tensors="pt")).logits


@pytest.fixture
def tiny_bert(tiny_bert_dir):
    return classifier(tiny_bert_dir), AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_pruned_vocabulary_gives_the_same_logits_for_the_texts(tiny_bert):
    model, tokenizer = tiny_bert
    before = logits(model, tokenizer, TEXTS)
    before_pairs = logits(model, tokenizer, TEXTS[:2], TEXTS[2:])
    new_tokenizer, report = prune_vocabulary_(model, tokenizer, TEXTS)
    assert torch.equal(logits(model, new_tokenizer, TEXTS), before)
    assert torch.equal(logits(model, new_tokenizer, TEXTS[:2], TEXTS[2:]), before_pairs)
    words = {word for text in TEXTS for word in text.split()}
    assert report["kept_special"] == 5 and report["kept_from_texts"] == len(words) and report["kept_top"] == 0
    assert report["tokens_before"] == len(tokenizer) and report["tokens_after"] == len(new_tokenizer) == 5 + len(words)
    assert model.config.vocab_size == model.get_input_embeddings().num_embeddings == len(new_tokenizer)
    hidden = model.config.hidden_size
    assert report["embedding_parameters_after"] == len(new_tokenizer) * hidden < report["embedding_parameters_before"]
    # Specials keep their low ids, in their original order.
    assert [new_tokenizer.pad_token_id, new_tokenizer.unk_token_id, new_tokenizer.cls_token_id] == [0, 1, 2]
    assert model.config.pad_token_id == 0 and model.get_input_embeddings().padding_idx == 0


def test_a_word_absent_from_the_texts_becomes_unk(tiny_bert):
    model, tokenizer = tiny_bert
    assert tokenizer.tokenize("the zebra") == ["the", "z", "##e", "##b", "##r", "##a"]  # spelled before pruning
    new_tokenizer, _ = prune_vocabulary_(model, tokenizer, TEXTS)
    assert new_tokenizer.tokenize("the zebra") == ["the", "[UNK]"]
    assert torch.isfinite(logits(model, new_tokenizer, ["the zebra was great", "zzz"])).all()


def test_pruned_model_and_tokenizer_save_and_reload(tiny_bert, tmp_path):
    model, tokenizer = tiny_bert
    new_tokenizer, _ = prune_vocabulary_(model, tokenizer, TEXTS)
    truncate_positions_(model, 24)
    model.save_pretrained(tmp_path)
    new_tokenizer.save_pretrained(tmp_path)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded_tokenizer) is type(tokenizer) and reloaded_tokenizer.get_vocab() == new_tokenizer.get_vocab()
    probe = [*TEXTS, "the zebra"]
    expected = logits(model, new_tokenizer, probe)
    assert torch.equal(logits(load_classifier(tmp_path).eval(), reloaded_tokenizer, probe), expected)
    assert torch.equal(logits(classifier(tmp_path), reloaded_tokenizer, probe), expected)


def test_vocab_top_keeps_the_lowest_ids(tiny_bert):
    model, tokenizer = tiny_bert
    top = 12
    lowest = tokenizer.convert_ids_to_tokens(list(range(top)))
    unseen = next(token for token in lowest if token and token not in tokenizer.all_special_tokens and token not in
                  " ".join(TEXTS).split())
    before = logits(model, tokenizer, [*TEXTS, unseen])
    new_tokenizer, report = prune_vocabulary_(model, tokenizer, TEXTS, keep_top=top)
    assert {token for token in lowest if token} <= set(new_tokenizer.get_vocab())  # the tiny vocabulary has a gap
    assert report["kept_top"] > 0
    assert report["kept_special"] + report["kept_from_texts"] + report["kept_top"] == report["tokens_after"]
    assert new_tokenizer.tokenize(unseen) == [unseen]
    assert torch.equal(logits(model, new_tokenizer, [*TEXTS, unseen]), before)


def test_real_wordpiece_vocabulary_splits_seen_words_the_same_way(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    assert any(len(tokenizer.tokenize(word)) > 1 for word in REAL_TEXTS[0].split())  # the test needs sub-words
    before = logits(model, tokenizer, REAL_TEXTS)
    new_tokenizer, report = prune_vocabulary_(model, tokenizer, REAL_TEXTS)
    for text in REAL_TEXTS:
        assert new_tokenizer.tokenize(text) == tokenizer.tokenize(text)
    assert torch.equal(logits(model, new_tokenizer, REAL_TEXTS), before)
    assert report["tokens_before"] == 30522 and report["tokens_after"] < 100
    assert new_tokenizer.tokenize("zebra") == ["[UNK]"]
    new_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(REAL_TEXTS)["input_ids"] == new_tokenizer(REAL_TEXTS)["input_ids"]


def test_bpe_unigram_and_slow_tokenizers_are_refused(tiny_roberta_dir, tmp_path):
    model = classifier(tiny_roberta_dir)
    bpe = RobertaTokenizer(vocab={"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4, "b": 5, "ab": 6},
                           merges=[("a", "b")])
    unigram = XLMRobertaTokenizer(vocab=[("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁a", -1.0)])
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    slow = BertTokenizerLegacy(str(tmp_path / "vocab.txt"))
    rows = model.get_input_embeddings().num_embeddings
    for tokenizer, kind in ((bpe, "BPE"), (unigram, "Unigram"), (slow, "slow")):
        with pytest.raises(BertcError, match="supports WordPiece tokenizers") as err:
            prune_vocabulary_(model, tokenizer, TEXTS)
        message = str(err.value)
        assert kind in message and "rest of pruning still works" in message and "\n" not in message
    assert model.get_input_embeddings().num_embeddings == rows  # refused before touching the model


def test_truncated_positions_keep_short_inputs_identical_and_reload(tiny_bert, tmp_path):
    model, tokenizer = tiny_bert
    before = logits(model, tokenizer, TEXTS)
    report = truncate_positions_(model, 16)
    assert report["positions_before"] == 128 and report["positions_after"] == 16
    assert model.config.max_position_embeddings == 16 == usable_positions(model.config)
    embeddings = model.bert.embeddings
    assert embeddings.position_ids.shape[-1] == embeddings.token_type_ids.shape[-1] == 16
    assert torch.equal(logits(model, tokenizer, TEXTS), before)
    model.save_pretrained(tmp_path)
    assert torch.equal(logits(load_classifier(tmp_path).eval(), tokenizer, TEXTS), before)


def test_truncated_positions_of_roberta_keep_the_reserved_rows(tiny_roberta_dir, tmp_path):
    model, tokenizer = classifier(tiny_roberta_dir), AutoTokenizer.from_pretrained(tiny_roberta_dir)
    before = logits(model, tokenizer, TEXTS)
    reserved = model.config.pad_token_id + 1
    truncate_positions_(model, 16)
    assert model.config.max_position_embeddings == 16 + reserved and usable_positions(model.config) == 16
    assert torch.equal(logits(model, tokenizer, TEXTS), before)
    model.save_pretrained(tmp_path)
    assert torch.equal(logits(classifier(tmp_path), tokenizer, TEXTS), before)


def test_too_many_positions_are_refused(tiny_bert, tiny_roberta_dir):
    model, _ = tiny_bert
    with pytest.raises(BertcError, match=r"--max-positions 129 is more than the 128 tokens"):
        truncate_positions_(model, 129)
    roberta = classifier(tiny_roberta_dir)
    limit = usable_positions(roberta.config)
    with pytest.raises(BertcError, match=f"pass --max-positions {limit} or less"):
        truncate_positions_(roberta, limit + 1)
    with pytest.raises(BertcError, match="at least 1"):
        truncate_positions_(model, 0)
    assert model.config.max_position_embeddings == 128


def test_pruned_model_exports_to_onnx(tiny_bert_dir):
    model, tokenizer = classifier(tiny_bert_dir, attn_implementation="eager"), AutoTokenizer.from_pretrained(
        tiny_bert_dir)
    new_tokenizer, _ = prune_vocabulary_(model, tokenizer, [*TEXTS, "the quick brown fox jumps over the lazy dog"])
    truncate_positions_(model, 40)  # export traces that sentence: 33 tokens with the tiny vocabulary
    task = {**labels_task(model.config.id2label), "max_length": 40}
    samples = Samples(TextDataset(texts=TEXTS, labels=[None] * len(TEXTS)), "the kept texts", False)
    exported = export_(model, new_tokenizer, ExportConfig(optimize="basic"), task=task, samples=samples)
    assert exported.metrics["verification"]["passed"] and exported.metrics["verification"]["samples"] == len(TEXTS)


def test_vocabulary_texts_reads_both_texts_of_pairs_without_labels(tmp_path):
    single = tmp_path / "single.tsv"
    single.write_text("sentence\nthe movie\na plot\n")
    assert vocabulary_texts(str(single), {}) == ["the movie", "a plot"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("premise,hypothesis,label\nit rains,it is wet,1\n")
    assert sorted(vocabulary_texts(str(pairs), {})) == ["it is wet", "it rains"]
    named = tmp_path / "named.jsonl"
    named.write_text('{"body": "kept", "other": "ignored", "text": "auto"}\n')
    assert vocabulary_texts(str(named), {"text_column": "body", "text_pair_column": None}) == ["kept"]
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.tsv").write_text("sentence\tlabel\ntrain words\t1\n")
    (splits / "test.tsv").write_text("sentence\ntest words\n")
    assert sorted(vocabulary_texts(str(splits), {})) == ["test words", "train words"]


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n", "sentence\n \n"])
def test_a_data_file_without_texts_is_refused(tmp_path, content):
    data = tmp_path / "empty.tsv"
    data.write_text(content)
    with pytest.raises(BertcError, match="--vocab DATA has no texts") as err:
        vocabulary_texts(str(data), {})
    assert str(data) in str(err.value) and "\n" not in str(err.value)
