"""The options of export and quantize: ranges, tolerances, and method configs built from CLI-style options."""

from __future__ import annotations

import pytest

from bertc.errors import BertcError
from bertc.export.config import (
    METHOD_CONFIGS,
    DynamicQuantConfig,
    ExportConfig,
    Fp16Config,
    QuantizeConfig,
    StaticQuantConfig,
    TorchDynamicConfig,
    method_config,
)


def test_export_tolerance_depends_on_the_variant_unless_given():
    assert (ExportConfig().variant, ExportConfig().tolerance) == ("fp32", 1e-3)
    assert (ExportConfig(fp16=True).variant, ExportConfig(fp16=True).tolerance) == ("fp16", 5e-2)
    assert ExportConfig(fp16=True, atol=0.2).tolerance == 0.2


def test_export_ranges_are_all_reported_at_once():
    with pytest.raises(BertcError) as err:
        ExportConfig(opset=13, strict=True, optimize="basic", verify_samples=0, atol=0.0, min_agreement=1.5)
    assert str(err.value) == "; ".join([
        "--opset 13 is not supported; use 14 to 20 (default 17)",
        "--strict checks Attention fusion, which --optimize basic does not do; drop --strict or use --optimize all",
        "--verify-samples must be at least 1, got 0",
        "--atol must be positive, got 0.0",
        "--min-agreement must be in [0, 1], got 1.5"])
    assert ExportConfig(opset=14).opset == 14 and ExportConfig(opset=20).opset == 20
    assert ExportConfig(strict=True).strict  # with --optimize all


def test_a_wrong_type_is_reported_beside_a_bad_range_of_another_field():
    with pytest.raises(BertcError) as err:
        ExportConfig(opset="17", verify_samples=0)
    assert str(err.value) == "--opset must be a whole number, got '17'; --verify-samples must be at least 1, got 0"


def test_static_calibration_ranges():
    with pytest.raises(BertcError, match=r"--calibration-samples must be at least 1, got 0; "
                                         r"--percentile must be in \(50, 100\], got 50"):
        StaticQuantConfig(calibration_samples=0, percentile=50)
    assert StaticQuantConfig(percentile=100).percentile == 100
    with pytest.raises(BertcError, match="--calibration 'kl' is not one of minmax, entropy, percentile"):
        StaticQuantConfig(calibration="kl")


def test_quantize_ranges_and_its_default_method():
    assert QuantizeConfig().method == DynamicQuantConfig()
    with pytest.raises(BertcError) as err:
        QuantizeConfig(eval_samples=0, sensitivity_samples=0, max_float_layers=0, max_accuracy_drop=-0.5)
    assert str(err.value) == ("--eval-samples must be at least 1, got 0; --sensitivity-samples must be at least 1, "
                              "got 0; --max-float-layers must be at least 1, got 0; --max-accuracy-drop must be "
                              ">= 0 (accuracy points), got -0.5")
    assert QuantizeConfig(max_accuracy_drop=0).max_accuracy_drop == 0


def test_each_method_config_names_its_method_and_variant():
    assert [(cls().method, cls.variant) for cls in METHOD_CONFIGS] == [
        ("dynamic", "int8-dynamic"), ("static", "int8-static"), ("fp16", "fp16"),
        ("torch-dynamic", "int8-torch-dynamic"), ("nncf-int8", "int8-nncf")]
    with pytest.raises(TypeError):
        DynamicQuantConfig(method="static")  # the method is fixed by the class


def test_method_config_builds_the_methods_config_from_the_options_it_takes():
    assert method_config("dynamic") == DynamicQuantConfig()
    assert method_config("dynamic", per_channel=True, reduce_range=True) == DynamicQuantConfig(True, True)
    assert method_config("static", calibration="entropy", calibration_samples=50, percentile=99.9) == \
        StaticQuantConfig(calibration="entropy", calibration_samples=50, percentile=99.9)
    assert method_config("fp16", per_channel=False) == Fp16Config()  # an unset switch is not an option given
    assert method_config("torch-dynamic") == TorchDynamicConfig()


def test_method_config_refuses_unknown_methods_and_options_it_does_not_take():
    with pytest.raises(BertcError,
                       match=r"^--method 'int4' is not one of dynamic, static, fp16, torch-dynamic, nncf-int8$"):
        method_config("int4")
    with pytest.raises(BertcError, match=r"^--calibration does not apply to --method dynamic; it takes "):
        method_config("dynamic", calibration="entropy")
    with pytest.raises(BertcError, match=r"^--calibration-data, --percentile do not apply to --method dynamic"):
        method_config("dynamic", calibration_data="x.tsv", percentile=99.0)
    with pytest.raises(BertcError, match="--calibration-samples must be at least 1"):  # the config's own checks
        method_config("static", calibration_samples=0)


def test_method_config_names_only_real_options_in_its_refusal():
    with pytest.raises(BertcError) as err:
        method_config("dynamic", calibration="entropy")
    assert str(err.value) == ("--calibration does not apply to --method dynamic; it takes --per-channel, "
                              "--reduce-range")
    with pytest.raises(BertcError) as err:
        method_config("fp16", per_channel=True)
    assert str(err.value) == "--per-channel does not apply to --method fp16; it takes no options"
