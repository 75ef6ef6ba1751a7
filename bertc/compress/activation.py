"""`bertc prune --activation`: swap the feed-forward activation (GELU, erf form, in BERT and MiniLM) of every
encoder layer for a cheaper one.

The model's ``config.hidden_act`` is set to the transformers name of the new activation and every layer's FFN
activation module is replaced, so the model in memory, its saved config.json and the model rebuilt from that
directory compute the same function. Only the FFN changes: BERT's pooler (tanh) and ELECTRA's classification head
(GELU) do not read ``hidden_act`` and keep their activations.
"""

from __future__ import annotations

from transformers.activations import ACT2FN

from bertc.errors import BertcError
from bertc.modeling import encoder_layers

# bertc's name -> the transformers ``hidden_act`` that computes it. Chosen for what ONNX Runtime's BERT optimizer
# makes of the graph torch.onnx (TorchScript) exports, measured with onnxruntime 1.32 and torch 2.13 at opsets 14-20:
#   gelu (erf, the original)        -> BiasGelu (a bias Add and Gelu fused)
#   gelu_new (tanh approximation)   -> FastGelu at every opset
#   gelu_pytorch_tanh (the same)    -> FastGelu at opsets 14-19, but at opset 20 it exports as ONNX
#                                      Gelu(approximate="tanh"), which the fuser turns into BiasGelu: erf GELU,
#                                      silently dropping the approximation. So gelu_tanh is gelu_new.
#   gelu_fast (tanh approximation   -> FastGelu at every opset; the same function as gelu_new, written with
#     as x * (1 + 0.044715 x^2))       fewer operations for PyTorch eager (equal to float rounding)
#   quick_gelu (x * sigmoid(1.702x))-> QuickGelu (a coarser approximation; not offered)
#   relu                            -> Relu, which needs no fusion
ACTIVATIONS: dict[str, str] = {
    "gelu_tanh": "gelu_new",
    "gelu_fast": "gelu_fast",
    "relu": "relu",
}


def swap_activation_(model, name: str) -> dict:
    """Give every encoder layer's FFN the activation bertc calls ``name`` (see ACTIVATIONS) and record it in
    ``model.config.hidden_act``; returns {"from": the old hidden_act, "to": the new one} (equal when the model
    already had it)."""
    if name not in ACTIVATIONS:
        raise BertcError(f"--activation {name!r} is not one of {', '.join(ACTIVATIONS)}; pick one of those")
    hidden_act = ACTIVATIONS[name]
    previous = model.config.hidden_act
    for index, layer in enumerate(encoder_layers(model)):
        intermediate = getattr(layer, "intermediate", None)
        if intermediate is None or not hasattr(intermediate, "intermediate_act_fn"):
            raise BertcError(f"encoder layer {index} of {type(model).__name__} has no intermediate.intermediate_act_fn "
                             "(the BERT feed-forward layout); --activation works on BERT, RoBERTa and ELECTRA "
                             "encoders only")
        intermediate.intermediate_act_fn = ACT2FN[hidden_act]  # a new module per layer, as transformers builds it
    model.config.hidden_act = hidden_act
    return {"from": previous if isinstance(previous, str) else getattr(previous, "__name__", repr(previous)),
            "to": hidden_act}
