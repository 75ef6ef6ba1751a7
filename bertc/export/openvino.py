"""`bertc export --openvino`: a PyTorch artifact as OpenVINO IR (model.xml + model.bin), verified against PyTorch.

1. ``openvino.convert_model`` on the PyTorch model (TorchScript trace of eager attention, as the ONNX export
   uses), with every input's batch and sequence axes dynamic and the output named ``logits``. Every family the
   ONNX export takes (BERT, DistilBERT, DeBERTa-v2, ModernBERT) converts this way, pruned layers included:
   OpenVINO needs no constant head counts.
2. ``openvino.save_model`` with ``compress_to_fp16=False``: its default would store fp16 weights.
3. Verification on real samples, as for ONNX: the saved IR, read back from its bytes and compiled with the
   inference precision the manifest records, against the PyTorch model. Beyond tolerance is an error and nothing
   is written.

The inference precision is always explicit (``--inference-precision``, f32 by default): OpenVINO's CPU plugin
runs f32 models in bf16 on CPUs that have it unless told otherwise, and bertc never applies bf16 silently.
bf16 is refused on a CPU without bf16 support.

``export_openvino_`` does it all in memory; ``bertc.export.onnx.export`` dispatches to it for ``--openvino`` and
writes the artifact (this module cannot import that one: it imports this one).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from bertc.errors import BertcError
from bertc.export.config import ExportConfig
from bertc.export.verify import Samples, check_samples_fit, compare, eval_report, logits_on, verification_samples
from bertc.inference.openvino import (
    KIND,
    MODEL_FILE,
    WEIGHTS_FILE,
    OpenVinoPredictor,
    check_precision,
    compile_model,
    first_line,
    import_openvino,
    read_ir,
)
from bertc.inference.pytorch import TorchPredictor
from bertc.modeling import describe_model, usable_positions

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
COMMAND = "bertc export --openvino"
# bf16 keeps 8 bits of mantissa, 3 fewer than fp16, so its default is 8x fp16's 5e-2; label agreement
# (--min-agreement) is the check that matters for it. At 0.1 the full run's SST-2 teacher was refused for a largest
# difference of 0.113 on 2,000 rows (mean 0.005) while labelling all 2,000 as PyTorch does.
BF16_ATOL = 4e-1
VARIANTS = {"f32": "fp32", "bf16": "bf16"}


@dataclass
class OpenVinoExported:
    """An OpenVINO IR that passed verification, with what its artifact's manifest records."""

    xml: bytes  # model.xml as openvino.save_model wrote it
    weights: bytes  # model.bin
    description: dict  # manifest["model"]: kind, variant, inference precision, OpenVINO version, inputs, shape
    metrics: dict  # "verification" against PyTorch, and "eval" when the samples are labelled

    def save(self, directory: Path) -> None:
        """Write model.xml and model.bin into ``directory``, byte for byte what was verified."""
        (Path(directory) / self.description["file"]).write_bytes(self.xml)
        (Path(directory) / self.description["weights_file"]).write_bytes(self.weights)

    def model(self):
        """The IR as an ``openvino.Model`` (read from memory)."""
        return read_ir(self.xml, self.weights)


def check_openvino_export(config: ExportConfig) -> None:
    """What would make ``--openvino`` fail, checked before any model is loaded: OpenVINO installed, a CPU that
    runs the chosen inference precision, and no option that only means something for ONNX Runtime."""
    ov = import_openvino(COMMAND)
    if config.device != "cpu":
        raise BertcError(f"--device {config.device}: OpenVINO models are verified and run on the CPU; drop --device")
    if config.strict:
        raise BertcError("--strict checks ONNX Runtime's Attention fusion, which --openvino does not use; drop "
                         "--strict")
    check_precision(ov.Core(), config.inference_precision, "use --inference-precision f32")


def export_openvino_(model, tokenizer, config: ExportConfig, *, task: dict | None = None,
                     samples: Samples | None = None) -> OpenVinoExported:
    """``model`` as OpenVINO IR, verified against it; the model is left as it was and nothing is written.

    ``task`` (labels, columns, recorded data) defaults to the labels of the model's config; ``samples`` to the
    examples ``config`` and ``task`` name (see ``verification_samples``). Load the model with eager attention
    (``load_model(path, attn_implementation="eager")``), as for the ONNX export. Raises BertcError when OpenVINO
    is missing, the CPU lacks the inference precision, or the IR disagrees with PyTorch beyond the tolerance."""
    check_openvino_export(config)
    task = task if task is not None else model_task(model)
    if samples is None:
        samples = verification_samples(config.data, task, config.split, config.verify_samples)
        check_samples_fit(samples, task["labels"])
    inputs = [name for name in INPUTS if name in tokenizer.model_input_names]
    was_training = model.training
    try:
        xml, weights = convert(model, tokenizer, inputs)
        metrics = verify_ir(model, tokenizer, read_ir(xml, weights), task, samples, config)
    finally:
        model.train(was_training)  # tracing and the predictor that verifies switch it to eval
    ov = import_openvino(COMMAND)
    description = describe_model(model)
    description.update({
        "kind": KIND, "variant": VARIANTS[config.inference_precision], "file": MODEL_FILE, "weights_file": WEIGHTS_FILE,
        "openvino_version": ov.__version__, "inference_precision": config.inference_precision,
        "inputs": inputs, "outputs": ["logits"],
        "dynamic_axes": {**{name: ["batch", "sequence"] for name in inputs}, "logits": ["batch"]},
        "conversion": "openvino.convert_model from PyTorch (eager attention), weights kept in fp32",
        "size_bytes": len(xml) + len(weights), "padding": "right"})
    return OpenVinoExported(xml, weights, description, metrics)


def model_task(model) -> dict:
    """The task of a model known only by its labels (as ``bertc.export.onnx.labels_task``)."""
    id2label = {str(k): v for k, v in (model.config.id2label or {"0": "LABEL_0", "1": "LABEL_1"}).items()}
    return {"labels": [id2label[k] for k in sorted(id2label, key=int)], "max_length": 128}


class LogitsWrapper(torch.nn.Module):
    """Positional int64 inputs in, logits out: the signature of the IR."""

    def __init__(self, model, inputs: list[str]):
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors):
        return self.model(**dict(zip(self.inputs, tensors))).logits


def convert(model, tokenizer, inputs: list[str]) -> tuple[bytes, bytes]:
    """The bytes of model.xml and model.bin: fp32 weights, dynamic batch and sequence axes."""
    ov = import_openvino(COMMAND)
    # Two rows of different length, so that the padding path of the mask is traced, and batch > 1; truncated to
    # the positions the model reads.
    example = tokenizer(["the quick brown fox jumps over the lazy dog", "hello"], padding=True, truncation=True,
                        max_length=min(16, usable_positions(model.config)), return_tensors="pt")
    args = tuple(example[name].to(torch.int64) for name in inputs)
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings about code we do not control
            converted = ov.convert_model(LogitsWrapper(model, inputs).eval(), example_input=args,
                                         input=[(ov.PartialShape([-1, -1]), ov.Type.i64) for _ in inputs],
                                         share_weights=False)  # the IR must not change when the model does
    except Exception as err:  # the PyTorch frontend raises assorted types on models it cannot convert
        raise BertcError(f"OpenVINO could not convert this {model.config.model_type} model ({type(err).__name__}: "
                         f"{first_line(err)}); "
                         "export it to ONNX with `bertc export` instead, or report the model type to bertc") from err
    for port, name in zip(converted.inputs, inputs):  # traced inputs are named after the wrapper's *tensors
        port.get_tensor().set_names({name})
    converted.outputs[0].get_tensor().set_names({"logits"})
    with tempfile.TemporaryDirectory(prefix="bertc-openvino-") as work:
        xml = Path(work) / MODEL_FILE
        ov.save_model(converted, str(xml), compress_to_fp16=False)
        return xml.read_bytes(), xml.with_name(WEIGHTS_FILE).read_bytes()


def tolerance(config: ExportConfig) -> float:
    if config.atol is not None or config.inference_precision == "f32":
        return config.tolerance
    return BF16_ATOL


def verify_ir(model, tokenizer, ir_model, task: dict, samples: Samples, config: ExportConfig) -> dict:
    """Run the IR next to PyTorch; raise when they disagree beyond the tolerance."""
    labels, max_length = task["labels"], task.get("max_length", 128)
    reference = logits_on(TorchPredictor(model, tokenizer, labels, max_length), samples)
    compiled = compile_model(ir_model, config.inference_precision, fix="use --inference-precision f32")
    candidate = logits_on(OpenVinoPredictor(compiled, tokenizer, labels, max_length), samples)
    atol = tolerance(config)
    result = compare(reference, candidate, samples, labels)
    result.update(atol=atol, min_agreement=config.min_agreement, reference="pytorch fp32 eager", device="cpu",
                  inference_precision=config.inference_precision)
    problems = []
    if result["max_abs_logit_diff"] > atol:
        problems.append(f"largest logit difference to PyTorch is {result['max_abs_logit_diff']:.3g} > --atol {atol:g}")
    if result["label_agreement"] < config.min_agreement:
        problems.append(f"only {100 * result['label_agreement']:.2f}% of labels agree with PyTorch "
                        f"({result['disagreements']} of {result['samples']}) < --min-agreement "
                        f"{100 * config.min_agreement:g}%")
    if problems:
        fix = "try --inference-precision f32" if config.inference_precision != "f32" else "report the model to bertc"
        raise BertcError(f"the OpenVINO model does not match PyTorch on {samples.source} at "
                         f"{config.inference_precision}: {'; '.join(problems)}. Nothing was written; {fix}")
    result["passed"] = True
    metrics = {"verification": result}
    if samples.labelled:
        metrics["eval"] = eval_report(candidate, samples, labels)
    return metrics
