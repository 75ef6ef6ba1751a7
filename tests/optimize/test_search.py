"""The search of `bertc optimize` as plain logic: candidates, order, early stopping, time budget, the winner."""

from __future__ import annotations

import re

import pytest

from bertc.errors import BertcError
from bertc.optimize.search import (
    CostModel,
    PrunedShape,
    Search,
    Shape,
    Step,
    check_candidates,
    expected_speedup,
    order_candidates,
    parse_candidate,
    preset_candidates,
    relative_cost,
    shape_after,
    time_reason,
)
from bertc.optimize.winner import choose

MINILM = Shape(layers=6, heads=12, ffn=1536, hidden=384, head_dim=32)
TINY = Shape(layers=2, heads=4, ffn=64, hidden=32, head_dim=8)
SEQ = 25


def specs(candidates) -> list[str]:
    return [c.spec for c in candidates]


def test_parse_candidate_normalizes_order_and_defaults_precision():
    c = parse_candidate("ffn50+layers3", "cpu")
    assert c.spec == "layers3+ffn50:int8-dynamic"
    assert c.chain() == ["layers3", "layers3+ffn50"]
    assert c.final_nodes() == ["layers3+ffn50-onnx", "layers3+ffn50-int8-dynamic"]
    assert parse_candidate("base:fp32", "cpu").final_nodes() == ["base-onnx"]
    assert parse_candidate("heads8", "cuda").precision == "fp16"
    assert parse_candidate("base", "cpu").chain() == []


@pytest.mark.parametrize("spec, target, compressed, standard", [
    ("base", "cpu", False, True), ("base:int8-static", "cpu", False, False), ("base:fp32", "cpu", False, False),
    ("layers3:int8-dynamic", "cpu", True, False), ("base", "cuda", False, True), ("base:fp32", "cuda", False, False),
    ("heads8", "cuda", True, False)])
def test_only_the_uncompressed_model_at_the_default_precision_is_the_standard_recipe(spec, target, compressed,
                                                                                     standard):
    candidate = parse_candidate(spec, target)
    assert candidate.compressed is compressed
    assert candidate.is_standard(target) is standard


def test_the_new_axes_parse_to_one_canonical_name_and_their_prune_options():
    c = parse_candidate(" ffn50 + heads6last3+hidden256 +layers3", "cpu")
    assert c.spec == "layers3+hidden256+heads6last3+ffn50:int8-dynamic"
    assert c.chain() == ["layers3", "layers3+hidden256", "layers3+hidden256+heads6last3",
                         "layers3+hidden256+heads6last3+ffn50"]
    assert parse_candidate(c.spec, "cpu") == c  # the canonical name reads back as the same candidate
    assert all(re.fullmatch(r"[a-z0-9+]+", node) for node in c.chain())  # plain directory names
    hidden, last_heads = c.steps[1], c.steps[2]
    assert (hidden, last_heads) == (Step("hidden", 256), Step("headslast", 6, last=3))
    assert hidden.prune_options() == {"hidden": 256}
    assert last_heads.prune_options() == {"heads_per_layer": "-3:6,-2:6,-1:6"}
    assert Step("headslast", 8, last=1).prune_options() == {"heads_per_layer": "-1:8"}
    assert parse_candidate("heads8+heads4last2", "cpu").node == "heads8+heads4last2"  # every layer, then the last


@pytest.mark.parametrize("spec, message", [
    ("layers3:fp16", "not one of fp32, int8-dynamic, int8-static"),
    ("heads:int8-dynamic", "not a compression step"),
    ("ffn150", "not a compression step"),
    ("layers3+layers2", "two steps of one kind, layers3 and layers2"),
    ("layers0", "not a compression step"),
    ("hidden0", "not a compression step"),
    ("hidden", "not a compression step"),
    ("heads8last0", "not a compression step"),
    ("heads0last2", "not a compression step"),
    ("lastheads8", "not a compression step"),
    ("heads-1x8", "not a compression step"),
    ("hidden256+hidden128", "two steps of one kind, hidden256 and hidden128"),
    ("heads8last2+heads6last1", "two steps of one kind"),
])
def test_parse_candidate_rejects_bad_specs(spec, message):
    with pytest.raises(BertcError, match=message) as caught:
        parse_candidate(spec, "cpu")
    assert "\n" not in str(caught.value)


def test_an_unknown_step_names_every_step_of_the_grammar():
    with pytest.raises(BertcError) as caught:
        parse_candidate("layers3+width256", "cpu")
    assert "'width256' is not a compression step" in str(caught.value)
    for token in ("layersK", "hiddenN", "headsN", "headsNlastK", "ffnP"):
        assert token in str(caught.value)


def test_check_candidates_rejects_steps_the_model_cannot_take():
    with pytest.raises(BertcError, match="layers6.*6 layers.*heads12.*12 heads"):
        check_candidates([parse_candidate("layers6", "cpu"), parse_candidate("heads12", "cpu")], MINILM)
    check_candidates([parse_candidate("layers3+heads8+ffn50", "cpu")], MINILM)


@pytest.mark.parametrize("spec, message", [
    ("hidden384", "hidden384:int8-dynamic: hidden384 keeps all or more than the model's 384 hidden channels"),
    ("hidden200", "hidden200:int8-dynamic: hidden200 is not a multiple of the model's head size 32"),
    ("hidden16", "hidden16:int8-dynamic: hidden16 is not a multiple of the model's head size 32 .*use e.g. "
                 "hidden32"),
    ("heads12last2", "heads12last2:int8-dynamic: heads12last2 keeps all or more than the 12 heads"),
    ("heads8+heads8last2", "heads8\\+heads8last2:int8-dynamic: heads8last2 keeps all or more than the 8 heads"),
    ("heads4last6", "heads4last6 names the last 6 of the 6 layers.*use heads4"),
    ("layers3+heads4last3", "heads4last3 names the last 3 of the 3 layers"),
])
def test_check_candidates_names_the_candidate_of_a_bad_size_in_one_line(spec, message):
    with pytest.raises(BertcError, match=message) as caught:
        check_candidates([parse_candidate("layers3+hidden256+heads4last2", "cpu"), parse_candidate(spec, "cpu")],
                         MINILM)
    assert "\n" not in str(caught.value) and str(caught.value).count(":int8-dynamic:") == 1


def test_presets_for_minilm_and_for_cuda():
    quick = specs(preset_candidates("quick", MINILM, "cpu"))
    assert quick == ["base:int8-dynamic", "layers3:int8-dynamic", "heads8:int8-dynamic", "ffn50:int8-dynamic"]
    full = specs(preset_candidates("full", MINILM, "cpu"))
    for spec in ("layers4:int8-dynamic", "layers3+ffn50:int8-dynamic", "heads6:int8-dynamic", "base:int8-static"):
        assert spec in full
    assert all(s.endswith(":fp16") for s in specs(preset_candidates("full", MINILM, "cuda")))
    tiny = specs(preset_candidates("quick", TINY, "cpu"))
    assert tiny == ["base:int8-dynamic", "layers1:int8-dynamic", "heads3:int8-dynamic", "ffn50:int8-dynamic"]


def test_the_full_preset_searches_hidden_width_and_the_heads_of_the_upper_layers():
    full = specs(preset_candidates("full", MINILM, "cpu"))
    for spec in ("hidden256:int8-dynamic", "layers3+hidden256:int8-dynamic", "heads4last3:int8-dynamic",
                 "layers2:int8-dynamic", "layers2+ffn50:int8-dynamic"):
        assert spec in full
    assert len(full) == len(set(full)) == 17
    # heads4last3 removes as many heads as heads8 does, all from the upper half of the layers
    assert sum(shape_after(MINILM, parse_candidate("heads4last3", "cpu").steps).heads) == \
        sum(shape_after(MINILM, parse_candidate("heads8", "cpu").steps).heads)
    tiny = specs(preset_candidates("full", TINY, "cpu"))
    for spec in ("hidden24:int8-dynamic", "layers1+hidden24:int8-dynamic", "heads2last1:int8-dynamic"):
        assert spec in tiny
    assert "hidden16:fp16" in specs(preset_candidates("full", Shape(4, 2, 64, 32, 16), "cuda"))
    for shape in (MINILM, TINY, Shape(12, 12, 3072, 768, 64), Shape(1, 4, 64, 32, 8), Shape(4, 2, 64, 32, 16)):
        for preset in ("quick", "full"):
            check_candidates(preset_candidates(preset, shape, "cpu"), shape)  # every preset step fits the model
    assert not any("last" in s for s in specs(preset_candidates("full", Shape(1, 4, 64, 32, 8), "cpu")))


def test_families_without_width_surgery_get_no_hidden_steps():
    distilbert = Shape(6, 12, 3072, 768, 64, width_surgery=False, family="distilbert")
    assert not any("hidden" in s for s in specs(preset_candidates("full", distilbert, "cpu")))
    assert any("hidden" in s for s in specs(preset_candidates("full", Shape(6, 12, 3072, 768, 64), "cpu")))
    with pytest.raises(BertcError, match="hidden-width pruning works on BERT-layout models, not this distilbert"):
        check_candidates([parse_candidate("hidden512:int8-dynamic", "cpu")], distilbert)


def test_expected_cost_and_order():
    assert relative_cost(MINILM, (), SEQ) == pytest.approx(1.0)
    costs = [relative_cost(MINILM, parse_candidate(s, "cpu").steps, SEQ)
             for s in ("heads8", "ffn50", "layers4", "layers3", "layers3+ffn50")]
    assert costs == sorted(costs, reverse=True) and costs[-1] < 0.5
    assert expected_speedup(parse_candidate("base", "cpu"), MINILM, SEQ, "cpu") == pytest.approx(4.4)
    ordered = specs(order_candidates(preset_candidates("full", MINILM, "cpu"), MINILM, SEQ, "cpu"))
    assert ordered[0] == "base:int8-dynamic"  # the standard recipe first: cheap, and every report compares with it
    assert ordered[1:3] == ["layers3+hidden256:int8-dynamic", "layers3+ffn50:int8-dynamic"]
    # 2 of 6 layers is expected faster still, but goes last: the likeliest to miss the budget
    assert ordered[-2:] == ["layers2+ffn50:int8-dynamic", "layers2:int8-dynamic"]
    assert ordered.index("layers3:int8-dynamic") < ordered.index("layers4:int8-dynamic") < \
        ordered.index("heads8:int8-dynamic")
    assert ordered.index("layers3:int8-dynamic") < ordered.index("layers3:int8-static")


def test_shape_after_and_cost_of_a_narrower_model_by_hand():
    steps = parse_candidate("layers3+hidden256+heads6last1+ffn50", "cpu").steps
    assert shape_after(MINILM, steps) == PrunedShape(layers=3, hidden=256, heads=(12, 12, 6), ffn=768)
    assert shape_after(MINILM, steps[:2]) == PrunedShape(3, 256, (12, 12, 12), 1536)
    # One MiniLM layer at 25 tokens, 2 FLOPs a multiply-add: projections 2*25*384*384*4 = 29,491,200, attention
    # 2*25*25*384*2 = 960,000, FFN 2*25*384*1536*2 = 58,982,400. At width 256 the projections and the FFN shrink
    # by 2/3 (19,660,800 and 39,321,600) and the attention stays.
    full, narrow = 89_433_600, 59_942_400
    expected = (6 * (narrow + 0.15 * full) + 0.2 * full * 256 / 384) / (6 * 1.15 * full + 0.2 * full)
    assert relative_cost(MINILM, parse_candidate("hidden256", "cpu").steps, SEQ) == pytest.approx(expected)
    assert expected == pytest.approx(0.7119, abs=1e-4)
    # attention cost is linear in the heads, so the same heads removed from the last layers cost the same
    assert relative_cost(MINILM, parse_candidate("heads4last3", "cpu").steps, SEQ) == \
        pytest.approx(relative_cost(MINILM, parse_candidate("heads8", "cpu").steps, SEQ))


def test_hidden_width_is_ordered_where_its_flops_put_it():
    candidates = preset_candidates("full", MINILM, "cpu")
    ordered = [c for c in order_candidates(candidates, MINILM, SEQ, "cpu") if c.precision == "int8-dynamic"
               and shape_after(MINILM, c.steps).layers >= 3]
    costs = [relative_cost(MINILM, c.steps, SEQ) for c in ordered[1:]]
    assert costs == sorted(costs)  # one precision, no deep cut: fastest expected (fewest FLOPs) first
    names = [c.spec for c in ordered]
    hidden, ffn50, layers4 = (relative_cost(MINILM, parse_candidate(s, "cpu").steps, SEQ)
                              for s in ("hidden256", "ffn50", "layers4"))
    assert layers4 < hidden < ffn50  # so hidden256 sits between them in the search
    assert names.index("layers4:int8-dynamic") < names.index("hidden256:int8-dynamic") < \
        names.index("ffn50:int8-dynamic")


def test_a_deep_cut_comes_after_the_safer_cut_and_is_still_tried_once_that_met_the_budget():
    search = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0)
    ordered = [c.spec for c in order_candidates(preset_candidates("full", MINILM, "cpu"), MINILM, SEQ, "cpu")]
    assert ordered.index("layers3+ffn50:int8-dynamic") < ordered.index("layers2:int8-dynamic")
    search.record_final(parse_candidate("layers3+ffn50", "cpu"), 0.5)
    assert search.skip_reason(parse_candidate("layers2", "cpu")) is None  # expected faster: worth its time
    assert "not needed" in search.skip_reason(parse_candidate("layers4", "cpu"))


def test_a_step_that_misses_the_budget_stops_its_chain_and_everything_more_compressed():
    search = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0)
    layers3, heads8 = parse_candidate("layers3", "cpu"), parse_candidate("heads8", "cpu")
    assert search.record_node("heads8", heads8.steps, 0.4)  # within budget: the chain goes on
    assert not search.record_node("layers3", layers3.steps, 2.5)
    for spec in ("layers3+ffn50", "layers3:int8-static", "layers3+heads6+ffn50"):
        assert "early stop" in search.skip_reason(parse_candidate(spec, "cpu"))
    assert "already loses 2.50 points" in search.skip_reason(parse_candidate("layers3+ffn50", "cpu"))
    assert "at least as compressed as layers3" in search.skip_reason(parse_candidate("layers2", "cpu"))
    for spec in ("layers4", "heads6", "ffn50", "base"):  # not dominated: still worth trying
        assert search.skip_reason(parse_candidate(spec, "cpu")) is None


def test_early_stopping_compares_width_and_the_heads_of_each_layer():
    search = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0)
    assert not search.record_node("hidden256", parse_candidate("hidden256", "cpu").steps, 3.0)
    assert not search.record_node("heads4last3", parse_candidate("heads4last3", "cpu").steps, 3.0)
    assert "step hidden256 already loses 3.00" in search.skip_reason(parse_candidate("hidden256+ffn50", "cpu"))
    for spec, node in (("hidden192", "hidden256"), ("layers4+hidden256", "hidden256"), ("heads4", "heads4last3"),
                       ("heads2last4", "heads4last3")):
        assert f"at least as compressed as {node}" in search.skip_reason(parse_candidate(spec, "cpu"))
    # wider, or with more heads in some layer than the missed shape has in its matching one: still tried
    for spec in ("heads8", "heads4last2", "ffn50", "heads2last2", "layers4+heads6"):
        assert search.skip_reason(parse_candidate(spec, "cpu")) is None, spec


def test_once_a_candidate_meets_the_budget_clearly_slower_ones_are_skipped_unless_exhaustive():
    search = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0)
    search.record_final(parse_candidate("layers3", "cpu"), drop_points=1.5)  # over budget: proves nothing
    assert search.skip_reason(parse_candidate("heads8", "cpu")) is None
    search.record_final(parse_candidate("layers3", "cpu"), drop_points=0.8)
    assert "not needed" in search.skip_reason(parse_candidate("heads8", "cpu"))
    assert search.skip_reason(parse_candidate("layers3+ffn50", "cpu")) is None  # expected faster: still tried
    exhaustive = Search(MINILM, SEQ, "cpu", max_accuracy_drop=1.0, exhaustive=True)
    exhaustive.record_final(parse_candidate("layers3", "cpu"), drop_points=0.0)
    assert exhaustive.skip_reason(parse_candidate("heads8", "cpu")) is None


def test_time_budget_and_measured_corrections():
    costs = CostModel(train_rate=35.0, infer_rate=120.0, selection_samples=500)
    finetune = costs.finetune(4000, 1.0)
    assert 4000 / 35 < finetune < 4000 / 35 + 60
    assert costs.distill(4000, 0.5, 1.0) < costs.finetune(4000, 1.0)  # a half-depth student trains faster
    assert costs.quantize(1.0, static=True) > costs.quantize(1.0)
    costs.correct("finetune", estimated=finetune, actual=2 * finetune)  # the machine is twice as slow as measured
    assert costs.distill(4000, 0.5, 1.0) == pytest.approx(2 * CostModel(35.0, 120.0, 500).distill(4000, 0.5, 1.0))
    assert costs.export(1.0) == pytest.approx(CostModel(35.0, 120.0, 500).export(1.0))  # other groups unchanged
    costs.correct("export", estimated=10, actual=1000)
    assert costs.corrections["convert"] == 4.0  # one odd stage cannot blow up every later estimate
    assert time_reason(need=300, wrap_up=100, left=500) is None
    assert "needs about 5.0 min plus 1.7 min" in time_reason(need=300, wrap_up=100, left=350)


def results(variants: list[tuple[str, float, float]]) -> dict:
    """Bench results of (name, accuracy, p50 ms) at batch 1 with real lengths; the first is the baseline."""
    return {"baseline": variants[0][0], "settings": [{"batch_size": 1, "seq_len": "real"}],
            "variants": [{"name": n, "path": f"/runs/{n}", "accuracy": a,
                          "latency": [{"batch_size": 1, "seq_len": "real", "p50_ms": p, "round_p50_ms": [p] * 3}]}
                         for n, a, p in variants]}


def test_choose_the_fastest_within_the_budget():
    bench = results([("finetune", 0.90, 20.0), ("base-int8", 0.897, 5.0), ("layers3-int8", 0.885, 2.5),
                     ("layers3+ffn50-int8", 0.86, 1.8)])
    choice = choose(bench, max_accuracy_drop=1.0)
    assert choice["winner"]["name"] == "base-int8" and not choice["shipped_baseline"]
    assert choice["winner"]["speedup"] == pytest.approx(4.0)
    assert choose(bench, max_accuracy_drop=2.0)["winner"]["name"] == "layers3-int8"
    over = {r["name"]: r["within_budget"] for r in choice["rows"]}
    assert over == {"finetune": True, "base-int8": True, "layers3-int8": False, "layers3+ffn50-int8": False}


def test_choose_with_a_latency_budget_takes_the_most_accurate_model_that_meets_it():
    bench = results([("finetune", 0.90, 20.0), ("a", 0.899, 6.0), ("b", 0.895, 4.0), ("c", 0.894, 3.0)])
    assert choose(bench, 1.0, latency_budget_ms=4.5)["winner"]["name"] == "b"
    missed = choose(bench, 1.0, latency_budget_ms=1.0)
    assert missed["winner"]["name"] == "c" and "meets the 1 ms latency budget" in missed["text"]


def test_the_report_recommends_what_optimize_ships():
    from bertc.bench.report import recommend

    bench = results([("finetune", 0.90, 20.0), ("a", 0.899, 6.0), ("b", 0.895, 4.0), ("c", 0.894, 3.0)])
    for row in (v["latency"][0] for v in bench["variants"]):
        row.update(speedup=20.0 / row["p50_ms"], speedup_min=20.0 / row["p50_ms"], speedup_max=20.0 / row["p50_ms"])
    for budget in (None, 4.5, 1.0):
        assert recommend(bench, 1.0, budget)["choice"] == choose(bench, 1.0, budget)["winner"]["name"]
    assert recommend(bench, 1.0, 4.5)["choice"] == "b"


def test_nothing_beats_the_baseline_ships_the_baseline():
    bench = results([("finetune", 0.90, 5.0), ("slow", 0.90, 6.0), ("inaccurate", 0.80, 1.0)])
    choice = choose(bench, max_accuracy_drop=1.0)
    assert choice["shipped_baseline"] and choice["winner"]["name"] == "finetune"
    assert choice["text"].startswith("Nothing beats the fine-tuned baseline finetune")
