"""Latency and throughput of model variants, measured side by side.

What is timed: one forward call on a batch that is already tokenised, padded and placed on the device, the
way a server calls the model. Tokenisation is not timed (it is the same for every variant of a model).

- Backends come from the artifact: PyTorch eager for ``pytorch`` and ``pytorch-quantized`` artifacts (the model
  is taken from ``bertc.inference.load_predictor``, so quantized PyTorch variants load exactly as for accuracy),
  an ONNX Runtime ``InferenceSession`` (``bertc.inference.onnx.create_session``) for ``onnx`` artifacts, and a
  model compiled by a plain ``openvino.Core`` (``bertc.inference.openvino.compile_artifact``) for ``openvino``
  ones, called through one synchronous infer request.
- ``seq_len="real"``: batches of real sentences, each batch padded only to its own longest member, so the
  latency distribution reflects the lengths of the data. A fixed length ``L``: every row holds ``L`` attended
  tokens, for capacity planning.
- Variants run interleaved: each round gives every variant a block of consecutive calls (the starting variant
  rotates), so slow drifts of the machine hit all variants alike. The first call of each block is not timed:
  it re-warms caches after the previous variant ran, as a server serving one model would have them.
- Each runtime keeps the threading a server would give it. ONNX Runtime sessions are bertc's
  (``create_session``): their threads spin while a call runs and stop when it returns, so an idle pool never slows
  whatever runs next on the same cores (with ORT's default, spinning on after a call, PyTorch eager ran up to 20x
  slower beside it on 2 cores; with no spinning at all, every operator waits for a thread to wake up, which costs
  the shallow models most). OpenVINO gets what ONNX Runtime gets: the
  thread count, one stream (its LATENCY hint: one request at a time uses every thread, as ``session.run`` does;
  THROUGHPUT would split the threads over streams no one feeds) and no pinning (ORT does not pin an explicit
  thread count); it offers no switch for its TBB workers' brief spin. PyTorch keeps its OpenMP defaults: their
  short spin after a block only overlaps the untimed re-warm call, while ``OMP_WAIT_POLICY=PASSIVE`` made
  PyTorch eager slower on 2 cores (measured: 12.9-13.9x instead of 9.1-10.2x for the same pair of models) and so
  would flatter every ratio against it.
- CPU calls are timed with ``perf_counter_ns``. On CUDA, PyTorch calls are bracketed by
  ``torch.cuda.synchronize()`` and ONNX Runtime runs through I/O binding with inputs and outputs on the GPU
  (``run_with_iobinding`` returns once the device work is done), so no host copies are timed.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertc.errors import BertcError
from bertc.inference.onnx import create_session, providers_for
from bertc.inference.openvino import KIND as OPENVINO
from bertc.inference.openvino import compile_artifact, compiled_properties
from bertc.inference.registry import load_predictor

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MAX_POOL = 512  # distinct batches cycled through per setting


@dataclass(frozen=True)
class Setting:
    batch_size: int
    seq_len: int | str  # "real" or a fixed number of tokens per row

    @property
    def label(self) -> str:
        seq = "real lengths" if self.seq_len == "real" else f"seq {self.seq_len}"
        return f"batch {self.batch_size}, {seq}"


# ---------------------------------------------------------------------------------------------- workloads

def make_batches(tokenizer, texts: list[str], pairs: list[str] | None, setting: Setting, max_length: int,
                 seed: int = 0, pool: int = MAX_POOL) -> list[dict[str, np.ndarray]]:
    """Up to ``pool`` batches of int64 inputs drawn from the data in a seeded random order."""
    if not texts:
        raise BertcError("no texts to time; pass --data with at least one row")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    count = min(pool, max(1, math.ceil(len(order) / setting.batch_size)))
    needed = count * setting.batch_size
    order = (order * math.ceil(needed / len(order)))[:needed]  # small data: cycle through it
    fixed = setting.seq_len != "real"
    length = int(setting.seq_len) if fixed else max_length
    batches = []
    for start in range(0, needed, setting.batch_size):
        rows = order[start:start + setting.batch_size]
        # right padding: ORT's fused Attention reads the mask as "the first N tokens are real"
        encoded = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows] if pairs else None,
                            truncation=True, max_length=length, padding="max_length" if fixed else "longest",
                            padding_side="right", return_tensors="np")
        batch = {k: np.ascontiguousarray(encoded[k], dtype=np.int64) for k in INPUT_NAMES if k in encoded}
        if fixed:  # every position is a real, attended token: the cost of L-token inputs
            batch["attention_mask"] = np.ones_like(batch["input_ids"])
        batches.append(batch)
    return batches


def check_fixed_lengths(path: Path, seq_lens) -> None:
    """Fixed lengths beyond the model's position embeddings cannot run; say so before any timing."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return
    limit = json.loads(config.read_text()).get("max_position_embeddings")
    too_long = [s for s in seq_lens if s != "real" and limit and int(s) > limit]
    if too_long:
        raise BertcError(f"--seq-len {too_long[0]} is longer than {path} supports ({limit} positions); "
                         f"use lengths up to {limit}")


# ---------------------------------------------------------------------------------------------- backends

class TorchBackend:
    """PyTorch eager: the model of a bertc predictor, called under ``inference_mode``."""

    name = "pytorch-eager"

    def __init__(self, model, device: str):
        import torch

        self.model, self.device, self.torch = model.eval(), device, torch

    def prepare(self, batch: dict[str, np.ndarray]):
        return {k: self.torch.from_numpy(v).to(self.device) for k, v in batch.items()}

    def run(self, inputs) -> None:
        with self.torch.inference_mode():
            self.model(**inputs)

    def timed(self, inputs) -> float:
        """Milliseconds of one call; on CUDA bracketed by synchronisations so queued work is counted."""
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            start = time.perf_counter_ns()
            self.run(inputs)
            self.torch.cuda.synchronize()
            return (time.perf_counter_ns() - start) / 1e6
        start = time.perf_counter_ns()
        self.run(inputs)
        return (time.perf_counter_ns() - start) / 1e6


class OrtBackend:
    """ONNX Runtime: ``session.run`` on CPU; I/O binding with device-resident inputs and outputs on CUDA.

    ``io_binding`` can be forced on the CPU too, which is how the binding path is tested without a GPU.
    """

    name = "onnxruntime"

    def __init__(self, session, device: str, io_binding: bool | None = None):
        self.session, self.device = session, device
        self.io_binding = device == "cuda" if io_binding is None else io_binding
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()][:1]

    def prepare(self, batch: dict[str, np.ndarray]):
        feeds = model_feeds(self.inputs, batch, "ONNX")
        if not self.io_binding:
            return feeds
        import onnxruntime as ort

        binding = self.session.io_binding()
        values = {name: ort.OrtValue.ortvalue_from_numpy(value, self.device, 0) for name, value in feeds.items()}
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.outputs[0], self.device)
        binding.bertc_inputs = values  # the device copies must live as long as the binding
        return binding

    def run(self, inputs) -> None:
        if self.io_binding:
            self.session.run_with_iobinding(inputs)  # returns once the device work is done
            inputs.synchronize_outputs()
        else:
            self.session.run(self.outputs, inputs)

    def timed(self, inputs) -> float:
        start = time.perf_counter_ns()
        self.run(inputs)
        return (time.perf_counter_ns() - start) / 1e6


class OpenVinoBackend:
    """OpenVINO on the CPU: one synchronous infer request of a compiled model, fed the batch's own arrays."""

    name = "openvino"

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.inputs = [port.get_any_name() for port in compiled.inputs]
        self.properties = compiled_properties(compiled)

    def prepare(self, batch: dict[str, np.ndarray]):
        return model_feeds(self.inputs, batch, "OpenVINO")

    def run(self, inputs) -> None:
        self.request.infer(inputs, share_inputs=True)  # no copy of the inputs, as ORT reads numpy in place

    def timed(self, inputs) -> float:
        start = time.perf_counter_ns()
        self.run(inputs)
        return (time.perf_counter_ns() - start) / 1e6


def model_feeds(inputs: list[str], batch: dict[str, np.ndarray], runtime: str) -> dict[str, np.ndarray]:
    """The batch's arrays under the model's input names; zero token types for a model that wants them."""
    feeds = {}
    for name in inputs:
        if name in batch:
            feeds[name] = batch[name]
        elif name == "token_type_ids":
            feeds[name] = np.zeros_like(batch["input_ids"])
        else:
            raise BertcError(f"the {runtime} model needs an input '{name}' that bertc does not make; bertc feeds "
                             f"{', '.join(INPUT_NAMES)}. Re-export it with `bertc export`")
    return feeds


def onnx_session(path: Path, manifest: dict, device: str, threads: int):
    """A session with all graph optimizations, as bertc serves ONNX, with ``threads`` intra-op threads."""
    model = Path(path) / manifest["model"].get("file", "model.onnx")
    if not model.is_file():
        raise BertcError(f"{model} is missing; the artifact is damaged, re-create it with `bertc export --onnx`")
    return create_session(model, device, threads)


TORCH_KINDS = ("pytorch", "pytorch-quantized")  # "pytorch-quantized": torch dynamic int8, applied when loaded


def check_device(device: str, kind: str) -> None:
    """Fail early when ``--device cuda`` cannot run this kind of model here."""
    if device != "cuda":
        return
    if kind == "onnx":
        providers_for(device)
        return
    if kind == OPENVINO:
        raise BertcError("OpenVINO models run on the CPU in bertc; bench them with --device cpu")
    if kind == "pytorch-quantized":
        raise BertcError("PyTorch dynamic int8 models run on the CPU only; bench them with --device cpu, or "
                         "bench an fp16 ONNX model on the GPU")
    import torch

    if not torch.cuda.is_available():
        raise BertcError("--device cuda was given but no CUDA GPU is available to PyTorch; use --device cpu")


def open_backend(path: Path, manifest: dict, device: str, threads: int, predictor=None):
    """The timing backend of an artifact. For PyTorch, pass the predictor already loaded for accuracy."""
    kind = manifest["model"].get("kind", "pytorch")
    if kind == "onnx":
        check_device(device, kind)
        return OrtBackend(onnx_session(path, manifest, device, threads), device)
    if kind == OPENVINO:
        check_device(device, kind)
        return OpenVinoBackend(compile_artifact(path, manifest, threads))
    if kind not in TORCH_KINDS:
        raise BertcError(f"{path} holds a '{kind}' model; bertc bench times {', '.join(TORCH_KINDS)}, onnx and "
                         f"{OPENVINO} artifacts")
    check_device(device, kind)
    import torch

    torch.set_num_threads(threads)
    if predictor is None:
        predictor = load_predictor(path, device=device)
    model = getattr(predictor, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise BertcError(f"the predictor of {path} exposes no PyTorch model to time; this artifact kind is not "
                         "supported by bertc bench yet")
    return TorchBackend(model, device)


# ---------------------------------------------------------------------------------------------- measuring

class Runner:
    """A backend with its prepared batches, handed out in a fixed cyclic order."""

    def __init__(self, backend, batches: list[dict[str, np.ndarray]]):
        self.backend = backend
        self.prepared = [backend.prepare(b) for b in batches]
        self.position = 0

    def next(self):
        inputs = self.prepared[self.position % len(self.prepared)]
        self.position += 1
        return inputs


def measure(runners: dict[str, Runner], *, warmup: int, runs: int, rounds: int, duration: float | None = None,
            advance: Callable[[int], None] = lambda n: None) -> dict[str, list[list[float]]]:
    """Milliseconds per call, per variant and per round, measured interleaved.

    With ``duration`` (seconds per variant), the call count of each variant follows from its warm-up speed.
    """
    names = list(runners)
    calls = {}
    for name in names:
        runner = runners[name]
        warm = [runner.backend.timed(runner.next()) for _ in range(max(warmup, 1 if duration else 0))]
        advance(len(warm))
        if duration:
            per_call = max(float(np.median(warm)), 1e-3) / 1000
            calls[name] = max(rounds, math.ceil(duration / per_call))
        else:
            calls[name] = runs
    per_round = {name: max(1, math.ceil(calls[name] / rounds)) for name in names}
    times = {name: [[] for _ in range(rounds)] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runner = runners[name]
            runner.backend.run(runner.next())  # untimed: re-warm after the previous variant
            block = times[name][r]
            for _ in range(per_round[name]):
                block.append(runner.backend.timed(runner.next()))
            advance(per_round[name] + 1)
    return times


def planned_calls(count: int, *, warmup: int, runs: int, rounds: int) -> int:
    """Calls ``measure`` makes for ``count`` variants (for the progress bar; an estimate with duration)."""
    return count * (warmup + rounds * (max(1, math.ceil(runs / rounds)) + 1))


def summarize(rounds_ms: list[list[float]], batch_size: int) -> dict:
    """Percentiles, mean and spread of per-call milliseconds; throughput in samples per second.

    The spread of a median is the range of the per-round medians: with interleaved rounds it shows how much the
    figure moved while the run lasted.
    """
    values = np.concatenate([np.asarray(r, dtype=float) for r in rounds_ms if r])
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    round_p50 = [float(np.median(r)) for r in rounds_ms if r]
    round_mean = [float(np.mean(r)) for r in rounds_ms if r]
    mean = float(values.mean())
    return {
        "runs": int(values.size),
        "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
        "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min_ms": float(values.min()), "max_ms": float(values.max()),
        "round_p50_ms": round_p50,
        "p50_spread": (max(round_p50) - min(round_p50)) / float(p50) if p50 > 0 else 0.0,
        "throughput": batch_size * 1000 / mean,
        "throughput_min": batch_size * 1000 / max(round_mean),
        "throughput_max": batch_size * 1000 / min(round_mean),
    }

