"""The quantization registry: one handler per method config, dispatch on the config's type, refusals in one line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from bertc.errors import BertcError
from bertc.export.config import METHOD_CONFIGS, DynamicQuantConfig, ExportConfig, QuantizeConfig, method_config
from bertc.export.quantize import quantize_
from bertc.export.registry import QUANTIZE_HANDLERS, handler_for, register_quantize_handler


@dataclass(frozen=True)
class Int4Config:
    method: str = field(default="int4", init=False)


def test_each_method_config_has_its_own_handler_and_variant():
    assert set(METHOD_CONFIGS) <= set(QUANTIZE_HANDLERS)
    handlers = [handler_for(config()) for config in METHOD_CONFIGS]
    assert len(set(handlers)) == len(handlers) == 5
    assert [config.variant for config in METHOD_CONFIGS] == [
        "int8-dynamic", "int8-static", "fp16", "int8-torch-dynamic", "int8-nncf"]
    for name in ("dynamic", "static", "fp16", "torch-dynamic", "nncf-int8"):
        assert handler_for(method_config(name)) is QUANTIZE_HANDLERS[type(method_config(name))]


def test_an_unregistered_config_type_is_refused_in_one_line():
    with pytest.raises(BertcError) as err:
        handler_for(Int4Config())
    message = str(err.value)
    assert message.startswith("no quantization handler is registered for Int4Config") and "\n" not in message
    assert "DynamicQuantConfig" in message  # and what is registered
    with pytest.raises(BertcError, match="no quantization handler is registered for Int4Config"):
        quantize_(object(), Int4Config())
    with pytest.raises(BertcError, match="unknown quantization method config Int4Config") as err:
        QuantizeConfig(method=Int4Config())
    assert "\n" not in str(err.value)


def test_a_registered_handler_is_what_quantize_dispatches_to(monkeypatch):
    monkeypatch.setattr("bertc.export.registry.QUANTIZE_HANDLERS", dict(QUANTIZE_HANDLERS))
    method = method_config("fp16")
    calls = []

    @register_quantize_handler(type(method))
    class Recording:
        def __init__(self, source, config, work):
            calls.append((source.model, config.method, config.device))

        def apply_(self, float_groups):
            calls.append(float_groups)
            return "quantized"

    assert handler_for(method) is Recording
    assert quantize_("graph", method, float_groups=("layer.0",), device="cuda") == "quantized"
    assert calls == [("graph", method, "cuda"), ["layer.0"]]


def test_the_registry_is_a_leaf():
    code = ("import sys, bertc.export.registry; "
            "assert not {'onnx', 'onnxruntime', 'bertc.export.quantizers', 'bertc.export.quantize'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_configs_check_types_and_choices_with_the_ranges():
    with pytest.raises(BertcError) as err:
        QuantizeConfig(split="dev", eval_samples=1.5, max_float_layers=0, device="tpu")
    message = str(err.value)
    for part in ("--split 'dev' is not one of train, validation, test", "--eval-samples must be a whole number",
                 "--max-float-layers must be at least 1, got 0", "--device 'tpu' is not one of cpu, cuda"):
        assert part in message
    with pytest.raises(BertcError) as err:
        ExportConfig(opset="17", optimize="max", atol=float("nan"), verify_samples=0)
    message = str(err.value)
    for part in ("--opset must be a whole number", "--optimize 'max' is not one of none, basic, all",
                 "--atol must be a finite number", "--verify-samples must be at least 1, got 0"):
        assert part in message
    with pytest.raises(BertcError, match="--per-channel must be true or false"):
        DynamicQuantConfig(per_channel="yes")
