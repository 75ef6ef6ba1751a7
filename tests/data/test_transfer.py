"""The distillation transfer set: unlabeled texts read from a file and embedding-neighbour augmentation, on a
hand-made vocabulary whose nearest neighbours are known."""

from __future__ import annotations

import re

import pytest
import torch

from bertc.data.config import TransferConfig
from bertc.data.neighbours import neighbour_augment, word_tokens
from bertc.data.transfer import read_unlabeled, transfer_texts
from bertc.errors import BertcError

# Pairs of words that are each other's nearest neighbour; the traps but "goodness" (a word) sit closer to "good"
# than "great" does, so they would be drawn if they were not excluded.
PAIRS = [("good", "great"), ("bad", "awful"), ("movie", "film"), ("the", "a"), ("was", "is"), ("plot", "story")]
TRAPS = ["[unused0]", "##s", ",", ".", "!", "goodness"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [word for pair in PAIRS for word in pair]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS + TRAPS)}
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


@pytest.fixture(scope="module")
def embeddings(tokenizer):
    """Each pair on its own axis, the second word slightly off it; the traps and special tokens on good's axis."""
    vocab = tokenizer.get_vocab()
    matrix = torch.zeros(len(vocab), 2 * len(PAIRS) + 1)
    for axis, (first, second) in enumerate(PAIRS):
        matrix[vocab[first], 2 * axis] = 1.0
        matrix[vocab[second], 2 * axis] = 1.0
        matrix[vocab[second], 2 * axis + 1] = 0.2
    for token in TRAPS + SPECIAL:
        matrix[vocab[token], 0] = 1.0
        matrix[vocab[token], 1] = 0.01
    matrix[vocab["goodness"]] = 0.0
    matrix[vocab["goodness"], -1] = 1.0  # a word of its own, no one's nearest
    return matrix


def augment(texts, tokenizer, embeddings, **options):
    settings = dict(copies=1, probability=1.0, neighbours=1, seed=0)
    settings.update(options)
    return neighbour_augment(texts, tokenizer, embeddings, **settings)


def test_words_are_replaced_by_their_nearest_neighbour(tokenizer, embeddings):
    assert augment(["the good movie was bad"], tokenizer, embeddings) == ["a great film is awful"]
    assert augment(["a great film is awful"], tokenizer, embeddings) == ["the good movie was bad"]


def test_punctuation_case_and_longer_words_are_kept(tokenizer, embeddings):
    # "goods" is two pieces (good ##s) and "excellent" is unknown: both stay, as does the spacing
    assert augment(["Good,  the GOOD goods!  excellent plot."], tokenizer, embeddings) == [
        "Great,  a GREAT goods!  excellent story."]


def test_only_word_tokens_are_drawn(tokenizer, embeddings):
    words = word_tokens(tokenizer, len(tokenizer))
    assert sorted(words.values()) == sorted([*WORDS, "goodness"])
    copies = augment(["good bad movie plot the was"] * 5, tokenizer, embeddings, copies=20, neighbours=50,
                     probability=0.7)
    drawn = {word for text in copies for word in text.split()}
    assert drawn <= set(WORDS) | {"goodness"}
    assert not set(re.findall(r"\[\w+\]|##\w+|[,.!]", " ".join(copies)))
    assert "goodness" in drawn  # the whole-word trap is a real neighbour


def test_augmentation_is_seeded(tokenizer, embeddings):
    texts = ["the good movie was bad", "a plot is great", "the film was awful and the story was good"]
    options = dict(copies=4, neighbours=6, probability=0.5)
    first = augment(texts, tokenizer, embeddings, seed=1, **options)
    assert first == augment(texts, tokenizer, embeddings, seed=1, **options)
    assert first != augment(texts, tokenizer, embeddings, seed=2, **options)
    assert len(first) > len(texts) and not set(first) & set(texts)
    assert len(set(first)) == len(first)


def test_copies_identical_to_the_text_are_dropped(tokenizer, embeddings):
    texts = ["the good movie was bad", "nothing here counts"]
    assert augment(texts, tokenizer, embeddings, copies=5, probability=1e-9) == []
    assert augment(texts, tokenizer, embeddings, copies=0) == []
    # one neighbour each and every word replaced: five copies are one text
    assert augment(texts, tokenizer, embeddings, copies=5) == ["a great film is awful"]


def test_byte_level_tokenizers_replace_whole_words_only(tmp_path):
    """A RoBERTa-style byte-level BPE marks word starts with the space before them: a text's first word is
    replaced too, and pieces that never start a word are never drawn."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    trainer = ByteLevelBPETokenizer()
    corpus = ["zz the good movie was bad", "zz a great film is awful"] * 20  # zz only ever starts a line
    trainer.train_from_iterator(corpus, vocab_size=1000, min_frequency=1, special_tokens=["<s>", "</s>", "<pad>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    vocab = tokenizer.get_vocab()
    assert "zz" in vocab and "Ġzz" not in vocab
    matrix = torch.eye(len(vocab))
    for first, second in PAIRS[:5]:
        matrix[vocab[f"Ġ{second}"]] = matrix[vocab[f"Ġ{first}"]] + 0.1 * matrix[vocab["<s>"]]
    matrix[vocab["zz"]] = matrix[vocab["Ġgood"]]  # a piece that never starts a word, the nearest to good
    assert augment(["good movie was bad"], tokenizer, matrix) == ["great film is awful"]
    assert augment(["zz the good"], tokenizer, matrix) == ["zz a great"]


def test_config_ranges_are_refused_at_once():
    with pytest.raises(BertcError) as err:
        TransferConfig(max_unlabeled=0, augment_copies=-1, neighbour_probability=0.0, neighbours=0,
                       unlabeled="u.txt")
    message = str(err.value)
    assert "\n" not in message
    for phrase in ("--max-unlabeled must be at least 1, got 0", "--augment-copies must be >= 0, got -1",
                   "--neighbour-probability must be in (0, 1], got 0.0", "--neighbours must be at least 1, got 0"):
        assert phrase in message
    assert TransferConfig(neighbour_probability=1.0).neighbour_probability == 1.0


@pytest.mark.parametrize(("options", "message"), [
    ({"unlabeled_column": "text"}, "--unlabeled-column needs --unlabeled"),
    ({"unlabeled": "  "}, "--unlabeled is empty"),
    ({"augment_copies": 1.5}, "--augment-copies must be a whole number"),
    ({"neighbour_probability": 1.5}, "--neighbour-probability must be in (0, 1], got 1.5"),
])
def test_config_problems(options, message):
    with pytest.raises(BertcError, match=re.escape(message)):
        TransferConfig(**options)


def test_read_unlabeled_text_file(tmp_path):
    path = tmp_path / "unlabeled.txt"
    path.write_text("  a fine   film \n\n   \nthe plot\nthird one\n")
    assert read_unlabeled(TransferConfig(unlabeled=str(path))) == ["a fine film", "the plot", "third one"]
    assert read_unlabeled(TransferConfig(unlabeled=str(path), max_unlabeled=2)) == ["a fine film", "the plot"]
    assert read_unlabeled(TransferConfig()) == []


def test_read_unlabeled_table(tmp_path):
    path = tmp_path / "unlabeled.tsv"
    path.write_text('sentence\tnote\nit\'s "quoted" text\tx\n\ty\nsecond\tz\n')
    assert read_unlabeled(TransferConfig(unlabeled=str(path))) == ['it\'s "quoted" text', "second"]
    assert read_unlabeled(TransferConfig(unlabeled=str(path), unlabeled_column="note")) == ["x", "y", "z"]
    with pytest.raises(BertcError, match="column 'review' not found .*--unlabeled-column") as err:
        read_unlabeled(TransferConfig(unlabeled=str(path), unlabeled_column="review"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "content"), [
    ("empty.txt", ""), ("blank.txt", "\n  \n\n"), ("empty.tsv", ""), ("header.tsv", "text\n\n"),
    ("blank-cells.tsv", "text\tlabel\n\t1\n  \t0\n"), ("blank.jsonl", '{"text": " "}\n')])
def test_a_file_without_texts_is_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BertcError) as err:
        read_unlabeled(TransferConfig(unlabeled=str(path)))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"--unlabeled file {path} has no texts") and "leave --unlabeled out" in message


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(BertcError, match="missing.txt does not exist; pass a file of texts"):
        read_unlabeled(TransferConfig(unlabeled=str(tmp_path / "missing.txt")))
    with pytest.raises(BertcError, match="is a directory"):
        read_unlabeled(TransferConfig(unlabeled=str(tmp_path)))
    (tmp_path / "texts.docx").write_text("a text")
    with pytest.raises(BertcError, match="unsupported extension '.docx'"):
        read_unlabeled(TransferConfig(unlabeled=str(tmp_path / "texts.docx")))


class Teacher:
    def __init__(self, embeddings):
        self.embedding = torch.nn.Embedding.from_pretrained(embeddings)

    def get_input_embeddings(self):
        return self.embedding


def test_transfer_texts_adds_unlabeled_and_augmented_texts_once(tmp_path, tokenizer, embeddings):
    path = tmp_path / "unlabeled.txt"
    path.write_text("the good movie was bad\nan unseen text\nan unseen text\n")
    train = ["the good movie was bad", "a great film is awful", "plot"]
    config = TransferConfig(unlabeled=str(path), augment_copies=3, neighbours=1, neighbour_probability=1.0)
    # the unlabeled repeat of a training text and the copies that are training texts are left out
    assert transfer_texts(config, tokenizer, Teacher(embeddings), train) == ["an unseen text", "story"]
    assert transfer_texts(TransferConfig(), tokenizer, Teacher(embeddings), train) == []
