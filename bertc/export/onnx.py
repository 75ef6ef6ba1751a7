"""`bertc export --onnx`: a PyTorch artifact as a fused, verified ONNX model.

1. Export with the TorchScript-based ``torch.onnx`` exporter and eager attention: the dynamo exporter and SDPA
   attention both produce graphs in which ONNX Runtime fuses no Attention. In the families whose attention ONNX
   Runtime fuses (BERT's layout, DistilBERT) each self-attention is run with its layer's head count as a
   constant in the reshapes, so the fuser can read heads per layer (pruned models have different counts per
   layer; transformers reshapes with -1, which defeats the detection).
2. ONNX Runtime's transformer optimizer (``--optimize all``) or its generic passes only (``basic``). Fused
   operators are counted; every fused Attention node's ``num_heads`` is checked against its layer. DeBERTa-v2
   (relative-position terms) and ModernBERT (rotary, local windows) have no fused form: the fuser leaves their
   attention alone and fuses the rest, and the export says so in one log line and in the manifest.
3. Optional fp16 conversion for GPU serving, with int64 inputs and float32 logits kept.
4. Verification against the PyTorch model on real samples: largest logit difference, label agreement and
   accuracy. Beyond tolerance is an error and nothing is written.

``export_`` does all of it in memory (a model and tokenizer in, the verified graph out); ``export`` is the stage
around it: it reads an artifact and writes one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from bertc.artifact import is_artifact, load_tokenizer, read_manifest, staging_dir, write_manifest
from bertc.errors import BertcError
from bertc.export import graph
from bertc.export.config import ExportConfig, Optimize
from bertc.export.openvino import check_openvino_export, export_openvino_
from bertc.export.reuse import output_to_build
from bertc.export.verify import Samples, check_samples_fit, compare, eval_report, logits_on, verification_samples
from bertc.families import family_of, get_path
from bertc.imports.source import classifier_source
from bertc.inference.onnx import OnnxPredictor, create_session
from bertc.inference.pytorch import TorchPredictor
from bertc.modeling import describe_model, head_size, usable_positions
from bertc.torch_artifact import load_model

log = logging.getLogger("bertc.export")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")

MODEL_FILE = "model.onnx"


@dataclass
class Exported:
    """An exported graph that passed verification, with what its artifact's manifest records."""

    proto: object  # onnx.ModelProto, fused (and fp16 with ExportConfig.fp16)
    description: dict  # manifest["model"]: kind, variant, shape, fusion counts and checks, inputs
    metrics: dict  # "verification" against PyTorch, and "eval" when the samples are labelled


def export(src: Path | str, config: ExportConfig, out: Path | str, *, overwrite: bool = False,
           resume: bool = False) -> Path:
    """A verified ONNX artifact at ``out`` of a classifier directory (``resume``: see bertc.export.reuse); with
    ``config.openvino`` a verified OpenVINO IR artifact instead (see bertc.export.openvino)."""
    src = Path(src)
    out, built = output_to_build(out, stage="export", config=config, src=src, overwrite=overwrite, resume=resume)
    if built:
        return out
    if config.openvino:
        check_openvino_export(config)
    task = source_task(src)
    samples = verification_samples(config.data, task, config.split, config.verify_samples)
    check_samples_fit(samples, task["labels"])
    model = load_model(src, attn_implementation="eager")
    tokenizer = load_tokenizer(src)
    exported = (export_openvino_ if config.openvino else export_)(model, tokenizer, config, task=task,
                                                                    samples=samples)
    with staging_dir(out, overwrite) as tmp:
        if config.openvino:
            exported.save(tmp)
        else:
            save_graph(exported.proto, tmp / MODEL_FILE)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, stage="export", config=config, parent=src, model=exported.description, task=task,
                       metrics=exported.metrics)
    return out


def export_(model, tokenizer, config: ExportConfig, *, task: dict | None = None,
            samples: Samples | None = None) -> Exported:
    """``model`` as a fused ONNX graph, verified against it; the model is left as it was.

    ``task`` (labels, columns, recorded data) defaults to the labels of the model's config; ``samples`` to the
    examples ``config`` and ``task`` name (see ``verification_samples``). Load the model with eager attention
    (``load_model(path, attn_implementation="eager")``): SDPA attention exports to graphs ORT does not fuse.
    Raises BertcError when the graph disagrees with PyTorch beyond the tolerance."""
    task = task if task is not None else labels_task(model.config.id2label)
    if samples is None:
        samples = verification_samples(config.data, task, config.split, config.verify_samples)
        check_samples_fit(samples, task["labels"])
    was_training = model.training
    try:
        proto, description = export_graph(model, tokenizer, config)
        metrics = verify_graph(model, tokenizer, proto, task, samples, config)
    finally:
        model.train(was_training)  # the predictor that verifies switches it to eval
    check = description["fusion_check"]
    if check is not None and not check["applies"]:
        log.warning("%s", check["note"])  # said once the graph is verified, so "verified" is true
    return Exported(proto, description, metrics)


def save_graph(proto, file: Path) -> None:
    import onnx

    onnx.save_model(proto, str(file))


def source_task(src: Path) -> dict:
    """The task of the artifact to export; a plain transformers directory gets one from its config."""
    if is_artifact(src):
        manifest = read_manifest(src)
        kind = manifest["model"].get("kind", "pytorch")
        if kind != "pytorch":
            raise BertcError(f"{src} holds a {manifest['model'].get('variant', kind)} {kind} model; export the "
                             "PyTorch artifact it came from (its parent is in bertc.json)")
        return manifest["task"]
    return classifier_source(src).task()  # a transformers classifier: a known family with a classification head


def labels_task(id2label: dict | None) -> dict:
    """The task of a classifier known only by its labels: no recorded columns or data."""
    id2label = {str(k): v for k, v in (id2label or {"0": "LABEL_0", "1": "LABEL_1"}).items()}
    labels = [id2label[k] for k in sorted(id2label, key=int)]
    return {"labels": labels, "text_column": None, "text_pair_column": None, "label_column": None,
            "max_length": 128, "train_data": None, "eval_data": None}


def export_graph(model, tokenizer, config: ExportConfig):
    """``model`` as an ONNX graph (optimized, checked, optionally fp16) and its manifest["model"]."""
    description = describe_model(model)
    family = family_of(model)
    inputs = [name for name in INPUTS if name in tokenizer.model_input_names]
    with tempfile.TemporaryDirectory(prefix="bertc-export-") as work:
        raw = Path(work) / "raw.onnx"
        torch_export(model, tokenizer, inputs, config.opset, raw)
        proto = optimize(raw, config.optimize, fuse_attention=family.fuses_attention)
    graph.name_nodes_(proto)
    graph.set_model_type_(proto, description["model_type"])
    fusion = graph.op_counts(proto)
    fusion_check = None
    if config.optimize == "all":
        fusion_check = check_fusion(proto, description, family, config)
    if config.fp16:
        proto = to_fp16(proto)
    description.update({
        "kind": "onnx", "variant": config.variant, "file": MODEL_FILE, "optimize": config.optimize,
        "opset": config.opset, "fusion": fusion, "fusion_check": fusion_check, "inputs": inputs,
        "outputs": ["logits"], "size_bytes": proto.ByteSize(),  # the size of the file onnx.save_model writes
        "padding": "right (fused attention treats the first sum(attention_mask) tokens as real)"})
    return proto, description


def check_fusion(proto, description: dict, family, config: ExportConfig) -> dict:
    """Where the family's attention fuses: every layer with heads has one fused node with its head count (too
    few is a warning, an error with --strict). Where it cannot fuse (relative-position or rotary attention),
    the record says so and no fused attention is expected."""
    heads = description["heads_per_layer"]
    if not family.fuses_attention:
        return {"applies": False, "attention_layers": sum(1 for h in heads if h > 0), "fused_attention": 0,
                "note": f"ONNX Runtime does not fuse {family.name} attention: shipping the verified unfused graph"}
    check = {"applies": True, **graph.check_attention(proto, heads)}
    if not check["complete"]:
        message = (f"only {check['fused_attention']} of {check['attention_layers']} attention layers fused into "
                   "ONNX Runtime Attention nodes; the model runs, but slower")
        if config.strict:
            raise BertcError(f"{message}. --strict makes this an error; report the model type to bertc")
        log.warning("WARNING: %s", message)
    return check


class ExportWrapper(torch.nn.Module):
    """Positional int64 inputs in, logits out: the signature of the ONNX graph."""

    def __init__(self, model, inputs: list[str]):
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors):
        return self.model(**dict(zip(self.inputs, tensors))).logits


def torch_export(model, tokenizer, inputs: list[str], opset: int, file: Path) -> None:
    # Two rows of different length, so that the padding path of the mask is traced, and batch > 1.
    # Truncated to the positions the model reads, which --max-positions may have made few.
    example = tokenizer(["the quick brown fox jumps over the lazy dog", "hello"], padding=True, truncation=True,
                        max_length=min(16, usable_positions(model.config)), return_tensors="pt")
    args = tuple(example[name].to(torch.int64) for name in inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes["logits"] = {0: "batch"}
    wrapper = ExportWrapper(model, inputs).eval()
    was_training = model.training
    model.eval()
    try:
        with constant_head_reshapes(model), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings about code we do not control
            torch.onnx.export(wrapper, args, str(file), input_names=inputs, output_names=["logits"],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
        raise BertcError(f"torch.onnx could not export this model at opset {opset}: "
                         f"{str(err).strip().splitlines()[0]}; try another --opset") from err
    finally:
        model.train(was_training)


@contextlib.contextmanager
def constant_head_reshapes(model):
    """Run every self-attention with its own head count as a constant while tracing (see module docstring).

    Only the families whose attention ONNX Runtime can fuse (BERT's layout and DistilBERT's) are patched; the
    others are traced as transformers runs them."""
    family, patched = family_of(model), []
    if family.fuses_attention:
        head_dim = head_size(model)
        module_path = family.query_path.rsplit(".", 1)[0]
        # the output projection runs inside the patched module when it belongs to it (DistilBERT), not BERT's
        out_inside = family.attention_out_path.rsplit(".", 1)[0] == module_path
        for layer in family.layers(model):
            if family.headless(layer):
                continue
            module = get_path(layer, module_path)
            out = get_path(layer, family.attention_out_path) if out_inside else None
            projections = [get_path(layer, path) for path in (family.query_path, family.key_path,
                                                              family.value_path)]
            module.forward = functools.partial(constant_heads_attention, *projections, out, head_dim)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward


def constant_heads_attention(query, key, value, out, size: int, hidden_states, attention_mask=None, *args,
                             **kwargs):
    """Eager self-attention as in transformers' BERT, with the head count a Python int (``out``: an output
    projection applied inside the block, as DistilBERT does)."""
    batch, seq = hidden_states.shape[:2]
    heads = query.out_features // size

    def split(x):  # (batch, seq, heads * size) -> (batch, heads, seq, size)
        return x.view(batch, seq, heads, size).transpose(1, 2)

    q, k, v = split(query(hidden_states)), split(key(hidden_states)), split(value(hidden_states))
    scores = torch.matmul(q, k.transpose(2, 3)) * size ** -0.5  # (batch, heads, seq, seq)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    context = torch.matmul(probs, v).transpose(1, 2).reshape(batch, seq, heads * size)
    return (out(context) if out is not None else context), None


def optimize(raw: Path, level: Optimize, fuse_attention: bool = True):
    """The exported graph after ONNX Runtime's optimizer at ``level``, as a ModelProto. Without
    ``fuse_attention`` (families whose attention has relative-position or rotary terms) the fuser leaves
    attention alone and fuses the rest (LayerNorms, Gelu); verification checks the result."""
    import onnx

    if level == "none":
        return onnx.load(str(raw))
    import onnxruntime
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    version = tuple(int(part) for part in onnxruntime.__version__.split(".")[:2] if part.isdigit())
    if level == "all" and version < (1, 21):
        raise BertcError(f"onnxruntime {onnxruntime.__version__} fuses attention with one head count for all "
                         "layers (wrong outputs for pruned models); install onnxruntime>=1.21 or use --optimize basic")
    try:
        with quiet_logging():
            if level == "basic":
                optimized = optimize_model(str(raw), model_type="bert", opt_level=1, only_onnxruntime=True)
            else:
                # num_heads=0, hidden_size=0: the fuser reads each layer's sizes from its (constant) reshapes.
                options = FusionOptions("bert")
                options.enable_attention = fuse_attention
                optimized = optimize_model(str(raw), model_type="bert", num_heads=0, hidden_size=0,
                                           optimization_options=options)
    except Exception as err:  # the optimizer raises assorted types on graphs it cannot handle
        raise BertcError(f"ONNX Runtime's optimizer failed at --optimize {level} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); try --optimize basic") from err
    return optimized.model


@contextlib.contextmanager
def quiet_logging():
    """Silence ONNX Runtime's Python-side fusion chatter (its modules log as top-level loggers)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def to_fp16(proto, node_block_list: list[str] | None = None):
    """Float16 weights and compute; int64 inputs and float32 logits kept so callers need no change."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(proto)
    model.convert_float_to_float16(keep_io_types=True, node_block_list=node_block_list or None)
    return model.model


def verify_graph(model, tokenizer, proto, task: dict, samples: Samples, config: ExportConfig) -> dict:
    """Run the graph next to PyTorch; raise when they disagree beyond the tolerance."""
    labels, max_length = task["labels"], task.get("max_length", 128)
    reference = logits_on(TorchPredictor(model, tokenizer, labels, max_length), samples)
    session = create_session(proto.SerializeToString(), config.device)
    candidate = logits_on(OnnxPredictor(session, tokenizer, labels, max_length), samples)
    result = compare(reference, candidate, samples, labels)
    result.update(atol=config.tolerance, min_agreement=config.min_agreement, reference="pytorch fp32 eager",
                  device=config.device)
    problems = []
    if result["max_abs_logit_diff"] > config.tolerance:
        problems.append(f"largest logit difference to PyTorch is {result['max_abs_logit_diff']:.3g} > "
                        f"--atol {config.tolerance:g}")
    if result["label_agreement"] < config.min_agreement:
        problems.append(f"only {100 * result['label_agreement']:.2f}% of labels agree with PyTorch "
                        f"({result['disagreements']} of {result['samples']}) < --min-agreement "
                        f"{100 * config.min_agreement:g}%")
    if problems:
        raise BertcError(f"the exported model does not match PyTorch on {samples.source}: {'; '.join(problems)}. "
                         "Nothing was written; try --optimize basic, or report the model to bertc")
    result["passed"] = True
    metrics = {"verification": result}
    if samples.labelled:
        metrics["eval"] = eval_report(candidate, samples, labels)
    return metrics
