"""What `bertc export` and `bertc quantize` print, read back from hand-written manifests."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bertc.artifact import write_manifest
from bertc.export import summary


@pytest.fixture
def printed(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(summary, "console", Console(file=out, width=200, color_system=None))
    return out


def rendered(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    return out.getvalue()


VERIFICATION = {"data": "dev.tsv", "samples": 60, "reference": "pytorch", "max_abs_logit_diff": 0.000123456,
                "label_agreement": 0.95, "disagreements": 3}


def test_pct_says_unknown_with_a_dash():
    assert summary.pct(None) == "-" and summary.pct(0.5) == "50.00%"


def test_verification_table_shows_tolerance_and_accuracy_only_when_measured():
    text = rendered(summary.verification_table(VERIFICATION, "verification against PyTorch"))
    assert "dev.tsv (60 examples)" in text and "0.000123" in text and "95.00%  (3 differ)" in text
    assert "tolerance" not in text and "│ accuracy" not in text
    measured = {**VERIFICATION, "atol": 0.001, "accuracy": 0.9, "reference_accuracy": 0.915,
                "accuracy_drop_points": 1.5}
    text = rendered(summary.verification_table(measured, "t"))
    assert "(tolerance 0.001)" in text and "│ accuracy" in text
    assert "90.00%  (reference 91.50%, drop +1.50 points)" in text


def export_artifact(tmp_path, check):
    model = {"kind": "onnx", "optimize": "all", "variant": "fp32", "heads_per_layer": [4, 4],
             "fusion": {"Attention": len(check["nodes"]) if check else 0, "SkipLayerNormalization": 4}}
    if check is not None:
        model["fusion_check"] = check
    tmp_path.mkdir(exist_ok=True)
    write_manifest(tmp_path, stage="export", config={}, parent=None, model=model, task={"labels": ["a", "b"]},
                   metrics={"verification": VERIFICATION})
    return tmp_path


def test_print_export_shows_fusion_and_warns_when_attention_did_not_fuse_everywhere(tmp_path, printed):
    nodes = [{"node": "Attention_0", "layer": 0, "num_heads": 4}]
    summary.print_export(export_artifact(tmp_path / "a", {"attention_layers": 2, "fused_attention": 1,
                                                          "complete": False, "nodes": nodes}))
    text = printed.getvalue()
    assert "--optimize all, fp32" in text and "SkipLayerNormalization" in text
    assert ("WARNING: Attention fused in 1 of 2 attention layers (heads per fused node: 4; model: [4, 4]); "
            "the model runs, but slower") in text
    assert text.rstrip().endswith(f"wrote {tmp_path / 'a'}")


def test_print_export_of_a_complete_fusion_has_no_warning(tmp_path, printed):
    nodes = [{"node": f"Attention_{i}", "layer": i, "num_heads": 4} for i in range(2)]
    summary.print_export(export_artifact(tmp_path / "a", {"attention_layers": 2, "fused_attention": 2,
                                                          "complete": True, "nodes": nodes}))
    text = printed.getvalue()
    assert "Attention fused in 2 of 2 attention layers (heads per fused node: 4, 4; model: [4, 4])" in text
    assert "WARNING" not in text
    printed.truncate(0)
    printed.seek(0)
    summary.print_export(export_artifact(tmp_path / "b", None))  # --optimize basic: no fusion check
    assert "Attention fused" not in printed.getvalue()


def quantize_artifact(tmp_path, budget, float_groups, attempts):
    tmp_path.mkdir()
    write_manifest(tmp_path, stage="quantize", config={}, parent=None, task={"labels": ["a", "b"]},
                   model={"kind": "onnx", "variant": "int8-dynamic", "quantization": {"float_groups": float_groups}},
                   metrics={"verification": VERIFICATION, "accuracy_budget": budget, "attempts": attempts})
    return tmp_path


def test_print_quantize_says_whether_the_budget_was_enforced(tmp_path, printed):
    summary.print_quantize(quantize_artifact(tmp_path / "a", {"met": None}, [], [{}]))
    text = printed.getvalue()
    assert "int8-dynamic against its parent" in text
    assert "no accuracy budget given (--max-accuracy-drop): measured, not enforced" in text
    assert "kept in float" not in text


def test_print_quantize_names_the_layers_kept_in_float(tmp_path, printed):
    budget = {"met": True, "accuracy_drop_points": 0.5, "max_accuracy_drop_points": 1.0}
    summary.print_quantize(quantize_artifact(tmp_path / "a", budget, ["layer.1", "classifier"], [{}, {}, {}]))
    text = printed.getvalue()
    assert "accuracy budget: drop +0.50 <= 1 points" in text
    assert "kept in float (most sensitive first): layer.1, classifier; attempts: 3" in text
