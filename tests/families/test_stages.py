"""Every family through finetune, prune (heads, FFN neurons, a layer), save/reload and distillation.

The mask-equivalence checks slice through bertc's family adapters but zero the reference model's weights by the
families' own module names written out here, so a wrong adapter cannot agree with itself."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bertc.artifact import read_manifest
from bertc.compress.config import DistillConfig, DistillLoss, PruneConfig
from bertc.compress.distill import distill
from bertc.compress.importance import compute_importance
from bertc.compress.prune import prune, prune_model_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import encoder_layers, keep_heads_, keep_layers_, keep_neurons_, layer_shapes, record_layer_shapes_
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from tests.conftest import quick_train_config
from tests.families.tiny import make_family_dir

TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]
HEAD_DIM = 8
# family -> (the projection reading the concatenated heads, the FFN output projection), per layer
OUTPUT_PROJECTIONS = {
    "bert": ("attention.output.dense", "output.dense"),
    "distilbert": ("attention.out_lin", "ffn.lin2"),
    "deberta-v2": ("attention.output.dense", "output.dense"),
    "deberta-v2-unshared": ("attention.output.dense", "output.dense"),
    "modernbert": ("attn.Wo", "mlp.Wo"),
}


def module(root, path: str):
    for part in path.split("."):
        root = getattr(root, part)
    return root


def logits(model, tokenizer, texts=TEXTS):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def test_pruned_logits_equal_the_unpruned_model_with_those_heads_and_neurons_zeroed(family, family_artifact):
    artifact = load_artifact(family_artifact)
    model, tokenizer = artifact.model, artifact.tokenizer
    reference = copy.deepcopy(model)
    heads = [[1, 3], [0], [0, 1, 2, 3]]
    neurons = [torch.tensor([0, 5, 9, 30]), torch.arange(10, 40), None]
    out_path, ffn_path = OUTPUT_PROJECTIONS[family]
    with torch.no_grad():
        for layer, kept, kept_neurons in zip(encoder_layers(reference), heads, neurons):
            out = module(layer, out_path)
            for head in set(range(4)) - set(kept):
                out.weight[:, head * HEAD_DIM:(head + 1) * HEAD_DIM] = 0
            if kept_neurons is not None:
                ffn = module(layer, ffn_path)
                dropped = sorted(set(range(ffn.in_features)) - set(kept_neurons.tolist()))
                ffn.weight[:, dropped] = 0
    for layer, kept, kept_neurons in zip(encoder_layers(model), heads, neurons):
        keep_heads_(model, layer, kept)
        if kept_neurons is not None:
            keep_neurons_(model, layer, kept_neurons)
    record_layer_shapes_(model)
    ffn = layer_shapes(reference)[1][0]
    assert layer_shapes(model) == ([2, 1, 4], [4, 30, ffn])
    pruned = logits(model, tokenizer)
    assert pruned.abs().max() > 0.05  # a trained model: the comparison below is not between near-zero logits
    torch.testing.assert_close(pruned, logits(reference, tokenizer), atol=1e-5, rtol=1e-4)


def test_prune_heads_ffn_and_a_layer_then_save_and_reload_identically(family, family_artifact, tiny_data, tmp_path):
    out = prune(family_artifact, PruneConfig(heads=2, ffn=0.5, layers=2, data=DataConfig(train=str(tiny_data)),
                                             importance_samples=32, recover=None), tmp_path / "pruned")
    manifest = read_manifest(out)
    assert manifest["model"]["heads_per_layer"] == [2, 2] and manifest["model"]["num_layers"] == 2
    ffn = manifest["model"]["ffn_per_layer"]
    assert len(set(ffn)) == 1 and ffn[0] < read_manifest(family_artifact)["model"]["ffn_per_layer"][0]
    artifact = load_artifact(out)
    first, second = logits(artifact.model, artifact.tokenizer), logits(load_model(out), artifact.tokenizer)
    assert torch.equal(first, second)
    saved = save_artifact(tmp_path / "again", artifact.model, artifact.tokenizer, stage="prune", config={},
                          task=manifest["task"])
    assert torch.equal(logits(load_model(saved), artifact.tokenizer), first)


def test_removing_the_first_layer_keeps_its_successors_norms(tmp_path):
    """ModernBERT's layer 0 has no attention norm: a model whose first layer was removed must say so in its
    config, or reloading would rebuild the new first layer without the norm it has."""
    source = make_family_dir(tmp_path / "mb", "modernbert")
    model = load_model(source)
    keep_layers_(model, [1, 2])
    original = json.loads((source / "config.json").read_text())["layer_types"]
    assert model.config.layer_types == original[1:] and original[0] != original[1]
    tokenizer = load_artifact_tokenizer(source)
    before = logits(model, tokenizer)
    saved = save_artifact(tmp_path / "cut", model, tokenizer, stage="prune", config={}, task={"labels": ["0", "1"]})
    assert json.loads((saved / "config.json").read_text())["bertc_first_layer_attn_norm"] is True
    torch.testing.assert_close(logits(load_model(saved), tokenizer), before, atol=0, rtol=0)


def load_artifact_tokenizer(path):
    from bertc.artifact import load_tokenizer

    return load_tokenizer(path)


def test_distill_into_a_one_layer_student_lowers_its_kl(family, family_artifact, tmp_path):
    task = read_manifest(family_artifact)["task"]
    teacher = load_artifact(family_artifact)
    texts = prepare_data(DataConfig(train=task["train_data"])).eval.texts
    config = DistillConfig(student_layers=1, loss=DistillLoss(soft_weight=1.0, hard_weight=0.0, hidden_weight=0.1,
                                                              attention_weight=0.1),
                           train=quick_train_config(epochs=2, lr=2e-3))
    out = distill(family_artifact, config, tmp_path / "student")
    student = load_model(out)
    assert layer_shapes(student)[0] == [4] and read_manifest(out)["compression"]["layer_map"] == [2]
    carved = copy.deepcopy(teacher.model)
    keep_layers_(carved, [2])
    before = kl(carved, teacher.model, teacher.tokenizer, texts)
    after = kl(student, teacher.model, teacher.tokenizer, texts)
    assert after < before, (before, after)


def kl(student, teacher, tokenizer, texts) -> float:
    s, t = logits(student, tokenizer, texts), logits(teacher, tokenizer, texts)
    return torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True,
                                      reduction="batchmean").item()


@pytest.mark.parametrize("flag", [{"hidden": 16}, {"activation": "relu"}, {"max_positions": 64}])
def test_bert_only_surgery_is_refused_for_other_families_in_one_line(flag, tmp_path):
    source = make_family_dir(tmp_path / "db", "distilbert")
    model = load_model(source)
    model_dir = save_artifact(tmp_path / "art", model, load_artifact_tokenizer(source), stage="finetune", config={},
                              task={"labels": ["neg", "pos"]})
    with pytest.raises(BertcError, match="not this distilbert one; --heads, --ffn and --layers prune every family"):
        prune_model_checked(model_dir, flag, tmp_path)
    assert not (tmp_path / "out").exists()


def prune_model_checked(src, flag, tmp_path):
    return prune(src, PruneConfig(importance="magnitude", recover=None, **flag), tmp_path / "out")


def test_importance_scores_cover_every_head_and_neuron(family, family_artifact, tiny_data):
    artifact = load_artifact(family_artifact)
    data = prepare_data(DataConfig(train=str(tiny_data)))
    labels = artifact.manifest["task"]["labels"]
    scores = compute_importance(artifact.model, artifact.tokenizer, data.train,
                                {label: i for i, label in enumerate(labels)}, samples=32, max_length=32)
    heads, ffn = layer_shapes(artifact.model)
    assert [len(h) for h in scores.heads] == heads and [len(f) for f in scores.ffn] == ffn
    assert all(sum(h) > 0 for h in scores.heads) and all(sum(f) > 0 for f in scores.ffn)
    kept = prune_model_(artifact.model, PruneConfig(heads=1, recover=None), scores)
    assert [len(h) for h in kept["kept_heads"]] == [1, 1, 1]


def test_the_torch_free_token_type_list_agrees_with_the_families():
    from bertc.artifact import NO_TOKEN_TYPES
    from bertc.families import FAMILIES

    assert set(NO_TOKEN_TYPES) == {t for f in FAMILIES if not f.takes_token_types for t in f.model_types}
