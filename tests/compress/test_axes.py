"""The architecture knobs of `bertc prune`: per-layer heads and FFN sizes, hidden width, vocabulary, positions and
the activation, through the library and the CLI."""

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from bertc.artifact import read_manifest
from bertc.cli import app
from bertc.compress.config import DistillLoss, PruneConfig
from bertc.compress.importance import ImportanceScores, compute_importance
from bertc.compress.prune import prune, prune_model_
from bertc.compress.selection import spec_targets
from bertc.compress.width import keep_hidden_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from bertc.inference.registry import load_predictor
from bertc.modeling import encoder_layers, layer_shapes, load_classifier, load_pretrained_classifier
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from tests.compress.test_prune import TEXTS, logits
from tests.conftest import assert_one_line_error, quick_train_config, write_tsv

runner = CliRunner()


def scores_for(model, heads: list[list[float]]) -> ImportanceScores:
    """Given head scores; FFN and hidden channels scored by index (higher index, more important)."""
    _, ffn = layer_shapes(model)
    return ImportanceScores(method="gradient", heads=heads, ffn=[list(range(f)) for f in ffn],
                            hidden=list(range(model.config.hidden_size)))


# ------------------------------------------------------------------------------------------- per-layer specs

def test_spec_targets_full_and_named():
    assert spec_targets("4,2", [4, 4], "--heads-per-layer", "heads") == [4, 2]
    assert spec_targets("-1:1", [4, 4, 4], "--heads-per-layer", "heads") == [4, 4, 1]
    assert spec_targets("0:3,-1:0", [4, 4, 4], "--heads-per-layer", "heads") == [3, 4, 0]
    assert spec_targets(None, [4], "--x", "heads") is None
    for spec, phrase in (("4,4,4", "gives 3 sizes but the model has 2 layers"), ("5,4", "keeps 5 heads in layer 0"),
                         ("-3:1", "names layer -3"), ("2:1", "names layer 2")):
        with pytest.raises(BertcError, match=phrase):
            spec_targets(spec, [4, 4], "--heads-per-layer", "heads")
    with pytest.raises(BertcError, match="keep at least 1"):
        spec_targets("0:0", [64, 64], "--ffn-per-layer", "FFN neurons", minimum=1)


def test_last_layer_heads_match_zeroing_the_least_important(classifier):
    """--heads -1:2 keeps the two best heads of the last layer only; the logits equal those of the unpruned model
    with the two other heads' value rows and output columns zeroed (mask equivalence)."""
    model, tokenizer = classifier
    scores = scores_for(model, [[0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.8, 0.2]])
    masked = copy.deepcopy(model)
    last = encoder_layers(masked)[-1]
    with torch.no_grad():
        for head in (1, 3):
            rows = slice(head * 8, (head + 1) * 8)
            last.attention.self.value.weight[rows] = 0
            last.attention.self.value.bias[rows] = 0
            last.attention.output.dense.weight[:, rows] = 0
    kept = prune_model_(model, PruneConfig(heads_per_layer="-1:2"), scores)
    assert kept["kept_heads"] == [[0, 1, 2, 3], [0, 2]]
    assert layer_shapes(model)[0] == [4, 2]
    assert torch.allclose(logits(model, tokenizer), logits(masked, tokenizer), atol=1e-5)


def test_ffn_per_layer_keeps_the_named_sizes(classifier, tmp_path):
    model, tokenizer = classifier
    kept = prune_model_(model, PruneConfig(ffn_per_layer="48,16"), scores_for(model, [[1.0] * 4] * 2))
    assert layer_shapes(model)[1] == [48, 16]
    assert kept["kept_neurons"][1] == list(range(48, 64))
    before = logits(model, tokenizer)
    save_artifact(tmp_path / "a", model, tokenizer, stage="prune", config={}, task={"labels": ["0", "1"]})
    assert torch.equal(logits(load_model(tmp_path / "a"), tokenizer), before)


def test_heads_per_layer_reaches_its_targets_in_iterative_steps(tiny_artifact, tmp_path):
    out = prune(tiny_artifact, PruneConfig(heads_per_layer="4,1", iterative=2, importance="magnitude"),
                tmp_path / "p")
    manifest = read_manifest(out)
    assert manifest["model"]["heads_per_layer"] == [4, 1]
    steps = json.loads((out / "importance.json").read_text())["steps"]
    assert [step["shape_after"]["heads_per_layer"] for step in steps] == [[4, 2], [4, 1]]


# ---------------------------------------------------------------------------------------------- hidden width

def test_keep_hidden_shapes_config_and_reload(classifier, tmp_path):
    model, tokenizer = classifier
    keep_hidden_(model, torch.arange(8, 24))
    config = model.config
    assert config.hidden_size == 16 and config.num_attention_heads == 2  # nominal: 16 / head size 8
    assert layer_shapes(model) == ([4, 4], [64, 64])  # every head keeps its width
    layer = encoder_layers(model)[0]
    assert layer.attention.self.query.weight.shape == (32, 16)
    assert layer.attention.output.dense.weight.shape == (16, 32)
    assert layer.intermediate.dense.weight.shape == (64, 16) and layer.output.dense.weight.shape == (16, 64)
    assert model.get_input_embeddings().weight.shape[1] == 16
    before = logits(model, tokenizer)
    model.save_pretrained(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["hidden_size"] == 16 and stored["bertc_heads_per_layer"] == [4, 4]
    assert torch.equal(logits(load_classifier(tmp_path / "m"), tokenizer), before)


def test_keeping_every_channel_changes_nothing(classifier):
    model, tokenizer = classifier
    before = logits(model, tokenizer)
    keep_hidden_(model, torch.arange(32).flip(0))  # any order: channels keep their order in the model
    assert torch.equal(logits(model, tokenizer), before)


def test_keep_hidden_refuses_widths_heads_cannot_fill(classifier):
    with pytest.raises(BertcError, match="not a multiple of the head size 8"):
        keep_hidden_(classifier[0], torch.arange(12))


def zero_hidden_channels_(model, channels: torch.Tensor) -> None:
    """Make ``channels`` carry nothing: zero in the embedding LayerNorm and every residual LayerNorm of a BERT."""
    norms = [model.bert.embeddings.LayerNorm] + [norm for layer in encoder_layers(model)
                                                 for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight[channels] = 0
            norm.bias[channels] = 0


def test_dead_hidden_channels_score_zero_and_go_first(tiny_bert_dir, tiny_data):
    """Channels that carry nothing anywhere (zero in the embeddings and every residual LayerNorm) have no
    gradient importance, and --hidden drops them first. (Outputs still change: the LayerNorm statistics now
    average over fewer channels.)"""
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    dead = torch.tensor([3, 17, 30])
    zero_hidden_channels_(model, dead)
    data = prepare_data(DataConfig(train=str(tiny_data))).train
    scores = compute_importance(model, tokenizer, data, {"0": 0, "1": 1}, samples=64, max_length=32)
    assert len(scores.hidden) == 32
    assert all(scores.hidden[i] == 0 for i in dead.tolist())
    assert sum(s > 0 for s in scores.hidden) == 29
    magnitude = compute_importance(model)
    assert all(magnitude.hidden[i] == 0 for i in dead.tolist())
    kept = prune_model_(model, PruneConfig(hidden=24), scores)
    assert not set(kept["kept_hidden"]) & set(dead.tolist())


def test_activation_importance_scores_dead_units_zero_and_ignores_padding(tiny_bert_dir, tiny_data):
    """Minitron's activation importance: a head whose values are zero, a neuron whose input is zero (GELU(0) = 0)
    and a channel that is zero in every residual LayerNorm score exactly 0 and are pruned first; the scores do
    not depend on how the sample was padded into batches."""
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    dead_channels = torch.tensor([3, 17, 30])
    zero_hidden_channels_(model, dead_channels)
    with torch.no_grad():
        for layer in encoder_layers(model):
            layer.attention.self.value.weight[8:16] = 0  # head 1 of 4 (8 channels each)
            layer.attention.self.value.bias[8:16] = 0
            layer.intermediate.dense.weight[:5] = 0  # neurons 0-4
            layer.intermediate.dense.bias[:5] = 0
    data = prepare_data(DataConfig(train=str(tiny_data))).train
    score = dict(tokenizer=tokenizer, dataset=data, label2id={"0": 0, "1": 1}, samples=64, max_length=32,
                 method="activation")
    scores = compute_importance(model, **score)
    assert scores.method == "activation" and scores.samples == 64
    for heads, ffn in zip(scores.heads, scores.ffn):
        assert heads[1] == 0 and min(heads[0], heads[2], heads[3]) > 0
        assert ffn[:5] == [0.0] * 5 and min(ffn[5:]) > 0
    assert [i for i, value in enumerate(scores.hidden) if value == 0] == dead_channels.tolist()
    unpadded = compute_importance(model, **score, batch_size=1)
    for padded_layer, unpadded_layer in zip(scores.heads + scores.ffn, unpadded.heads + unpadded.ffn):
        assert torch.allclose(torch.tensor(padded_layer), torch.tensor(unpadded_layer), rtol=1e-4)
    assert torch.allclose(torch.tensor(scores.hidden), torch.tensor(unpadded.hidden), rtol=1e-4)
    kept = prune_model_(model, PruneConfig(heads=3, ffn_size=59, hidden=24), scores)
    assert all(1 not in heads for heads in kept["kept_heads"])
    assert all(not set(range(5)) & set(neurons) for neurons in kept["kept_neurons"])
    assert not set(kept["kept_hidden"]) & set(dead_channels.tolist())


def test_activation_importance_through_the_cli(tiny_artifact, tmp_path):
    out = tmp_path / "p"
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), "--heads", "2", "--hidden", "24",
                                 "--importance", "activation", "--importance-samples", "32"])
    assert result.exit_code == 0, result.output
    assert read_manifest(out)["compression"]["importance"] == "activation"
    step = json.loads((out / "importance.json").read_text())["steps"][0]
    assert step["method"] == "activation" and len(step["hidden_kept"]) == 24
    assert load_model(out).config.hidden_size == 24


@pytest.mark.parametrize("method", ["gradient", "activation", "magnitude"])
def test_electra_with_narrow_embeddings_loses_hidden_channels_after_the_projection(tiny_bert_dir, tiny_data,
                                                                                   tmp_path, method):
    """ELECTRA's 16-wide embeddings are projected into its 32-wide residual stream: --hidden 24 scores only the
    residual channels, keeps the embeddings whole and narrows the projection's output; the model reloads with
    the same logits (to float rounding: the reload may pick another attention kernel) and exports with ONNX
    logits matching PyTorch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, ElectraConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    config = ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, num_labels=2)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()
    data = prepare_data(DataConfig(train=str(tiny_data))).train
    scores = (compute_importance(model) if method == "magnitude" else
              compute_importance(model, tokenizer, data, {"0": 0, "1": 1}, samples=32, max_length=32, method=method))
    assert len(scores.hidden) == 32 and min(scores.hidden) >= 0 and max(scores.hidden) > 0
    kept = prune_model_(model, PruneConfig(hidden=24), scores)
    assert len(kept["kept_hidden"]) == 24
    assert model.electra.embeddings.word_embeddings.weight.shape[1] == 16
    assert model.electra.embeddings_project.weight.shape == (24, 16)
    assert (model.config.hidden_size, model.config.embedding_size) == (24, 16)
    model.config.id2label, model.config.label2id = {0: "0", 1: "1"}, {"0": 0, "1": 1}
    out = save_artifact(tmp_path / "a", model, tokenizer, stage="prune", config={}, task={"labels": ["0", "1"]})
    expected = logits(model, tokenizer)
    torch.testing.assert_close(logits(load_model(out), tokenizer), expected, atol=1e-5, rtol=1e-4)
    onnx = export(out, ExportConfig(verify_samples=8), tmp_path / "onnx")
    assert abs(load_predictor(onnx).logits(TEXTS) - expected.numpy()).max() < 1e-4


def test_hidden_and_heads_in_one_step_export_fused(tiny_artifact, tmp_path):
    """--hidden 16 --heads 2: a 16-wide model with 2 heads of 8 per layer, exported with every fused Attention
    node's num_heads matching its layer and ONNX logits matching PyTorch."""
    out = prune(tiny_artifact, PruneConfig(hidden=16, heads=2, importance="magnitude"), tmp_path / "p")
    model = load_model(out)
    assert model.config.hidden_size == 16 and layer_shapes(model)[0] == [2, 2]
    onnx = export(out, ExportConfig(strict=True, verify_samples=16), tmp_path / "onnx")
    check = read_manifest(onnx)["model"]["fusion_check"]
    assert [node["num_heads"] for node in check["nodes"]] == [2, 2]
    artifact = load_artifact(out)
    expected = logits(artifact.model, artifact.tokenizer).numpy()
    got = load_predictor(onnx).logits(TEXTS)
    assert abs(got - expected).max() < 1e-4


def test_hidden_recovery_distils_channel_to_channel(tiny_artifact, tmp_path):
    """Iterative hidden pruning composes the kept channels in the parent's numbering, and recovery with the
    hidden-state loss compares each student channel with the parent channel it came from."""
    config = PruneConfig(hidden=16, iterative=2, importance="magnitude", distill=True,
                         recover=quick_train_config(max_steps=2, logging_steps=1),
                         distill_loss=DistillLoss(hidden_weight=1.0))
    out = prune(tiny_artifact, config, tmp_path / "p")
    steps = json.loads((out / "importance.json").read_text())["steps"]
    first, second = steps[0]["hidden_kept"], steps[1]["hidden_kept"]
    assert len(first) == 24 and len(second) == 16 and set(second) <= set(first) <= set(range(32))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("hidden" in json.dumps(record) for record in log)
    assert load_model(out).config.hidden_size == 16


# ------------------------------------------------------------------------------- vocabulary, positions, activation

def test_vocab_positions_and_activation_through_the_cli(tiny_artifact, tmp_path):
    texts = tmp_path / "texts.tsv"
    texts.write_text("sentence\nthe movie was great\nboring plot\n")
    out = tmp_path / "small"
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), "--vocab", str(texts),
                                 "--max-positions", "24", "--activation", "gelu_tanh"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    compression = manifest["compression"]
    assert compression["vocab"]["tokens_after"] < compression["vocab"]["tokens_before"]
    assert compression["positions"]["positions_after"] == 24
    assert compression["activation"] == {"from": "gelu", "to": "gelu_new"}
    assert manifest["task"]["max_length"] == 24
    model = load_model(out)
    assert model.config.hidden_act == "gelu_new" and model.config.max_position_embeddings == 24
    parent = load_artifact(tiny_artifact)
    pruned = load_artifact(out)
    seen = ["the movie was great"]
    assert pruned.tokenizer(seen)["input_ids"] != parent.tokenizer(seen)["input_ids"]  # new ids, same pieces
    assert pruned.tokenizer.convert_ids_to_tokens(pruned.tokenizer(seen[0])["input_ids"]) == \
        parent.tokenizer.convert_ids_to_tokens(parent.tokenizer(seen[0])["input_ids"])
    onnx = export(out, ExportConfig(verify_samples=16), tmp_path / "onnx")
    assert read_manifest(onnx)["model"]["fusion"]["FastGelu"] == 2


def test_vocab_without_structure_keeps_labels_on_seen_texts(tiny_artifact, tiny_data, tmp_path):
    out = prune(tiny_artifact, PruneConfig(vocab=str(tiny_data / "train.tsv")), tmp_path / "v")
    parent, pruned = load_artifact(tiny_artifact), load_artifact(out)
    texts = [line.split("\t")[0] for line in (tiny_data / "validation.tsv").read_text().splitlines()[1:]]
    assert torch.equal(logits(parent.model, parent.tokenizer, texts).argmax(-1),
                       logits(pruned.model, pruned.tokenizer, texts).argmax(-1))


@pytest.mark.parametrize("args, phrase", [
    (["--heads-per-layer", "4,4,4"], "gives 3 sizes but the model has 2 layers"),
    (["--heads", "-1:5"], "keeps 5 heads in layer 1, which has 4"),
    (["--heads", "0:-1"], "negative size"),
    (["--heads", "-1:2", "--heads-per-layer", "4,2"], "only one of --heads and --heads-per-layer"),
    (["--hidden", "12"], "not a multiple of the head size 8"),
    (["--hidden", "64"], "more than the model's hidden size 32"),
    (["--max-positions", "4096"], "more than the model's"),
    (["--vocab-top", "10"], "give --vocab too"),
    (["--activation", "swish"], "--activation 'swish'"),
])
def test_bad_axes_are_one_line_and_write_nothing(tiny_artifact, tmp_path, args, phrase):
    out = tmp_path / "out"
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), *args])
    assert result.exit_code == 2
    assert phrase in assert_one_line_error(result)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_vocab_data_without_texts_is_refused_before_work(tiny_artifact, tmp_path):
    empty = write_tsv(tmp_path / "empty.tsv", 0, seed=0)
    out = tmp_path / "out"
    result = runner.invoke(app, ["prune", str(tiny_artifact), "--out", str(out), "--vocab", str(empty)])
    assert result.exit_code == 2
    assert "no texts" in assert_one_line_error(result)
    assert not out.exists()
