"""Peak memory of one variant, measured in a fresh child process so variants cannot inflate each other.

Why a child process: the allocators of PyTorch, onnxruntime and glibc keep memory once used, so a peak
measured in the benchmarking process would depend on which variants ran before. Each variant instead runs in
its own interpreter (``python -m bertc.bench.memory``), which imports only its runtime, records its resident
memory, loads the model, runs the given batch a few times and reports:

- CPU: ``peak_rss_bytes``, the child's resident-memory high-water mark (``VmHWM`` in ``/proc/self/status``;
  not ``getrusage``'s ``ru_maxrss``, which on Linux also counts the parent's memory at fork time), and
  ``model_rss_bytes`` = that peak minus the resident memory just before the model was loaded, i.e. what the
  model and its inference add on top of the runtime's import.
- CUDA, PyTorch: ``peak_allocated_bytes`` from ``torch.cuda.max_memory_allocated`` (tensors only; the CUDA
  context and the caching allocator's slack are not counted).
- CUDA, onnxruntime: ``gpu_used_bytes``, the device memory ``nvidia-smi`` reports for the child after the runs
  (includes the CUDA context; ORT's arena keeps what it grew to, so this is close to its peak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bertc.bench.latency import open_backend
from bertc.errors import BertcError
from bertc.inference.registry import model_manifest


def peak_memory(path: Path, device: str, threads: int, batch: dict[str, np.ndarray], runs: int = 3,
                timeout: float = 600) -> dict:
    """Memory figures of the artifact at ``path`` running ``batch``, from a child process."""
    with tempfile.TemporaryDirectory(prefix="bertc-memory-") as tmp:
        inputs = Path(tmp) / "batch.npz"
        np.savez(inputs, **batch)
        request = {"path": str(Path(path).absolute()), "device": device, "threads": threads,
                   "batch": str(inputs), "runs": runs}
        try:
            done = subprocess.run([sys.executable, "-m", "bertc.bench.memory", json.dumps(request)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise BertcError(f"measuring the memory of {path} took over {timeout:.0f} s; "
                             "pass --no-memory to skip it") from err
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no output"]
        raise BertcError(f"measuring the memory of {path} failed in its child process: {lines[-1]}; "
                         "pass --no-memory to skip it")
    return json.loads(done.stdout.strip().splitlines()[-1])


def status_bytes(field: str) -> int:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak of this process image), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise BertcError(f"this system reports no {field} in /proc/self/status; pass --no-memory to skip memory")


def child(request: dict) -> dict:
    """Runs in the child: load one variant, run the batch, report memory (see the module docstring)."""
    path, device = Path(request["path"]), request["device"]
    path, manifest = model_manifest(path)
    kind = manifest["model"].get("kind", "pytorch")
    import_runtime(path, kind, device)
    batch = dict(np.load(request["batch"]))
    before = status_bytes("VmRSS")
    reset_peak()
    backend = open_backend(path, manifest, device, request["threads"])
    loaded = status_bytes("VmRSS")
    if device == "cuda" and kind != "onnx":
        import torch

        torch.cuda.reset_peak_memory_stats()
    inputs = backend.prepare(batch)
    for _ in range(request["runs"]):
        backend.run(inputs)
    peak = status_bytes("VmHWM")
    result = {"method": "child process, VmHWM", "batch_shape": list(batch["input_ids"].shape),
              "baseline_rss_bytes": before, "loaded_rss_bytes": loaded, "peak_rss_bytes": peak,
              "model_rss_bytes": max(0, peak - before)}
    if device == "cuda" and kind != "onnx":
        import torch

        torch.cuda.synchronize()
        result["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    elif device == "cuda":
        result["gpu_used_bytes"] = gpu_process_memory()
    return result


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux 4.0+), so an import-time spike is not counted as the model's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # older kernels: the peak may then include import-time spikes (only ever overstating memory)


def import_runtime(path: Path, kind: str, device: str) -> None:
    """Import everything running the model needs, so the baseline reading excludes code, not weights.

    For PyTorch that includes the transformers model class, whose import alone adds ~150 MB of RSS.
    """
    if kind == "onnx":
        import onnxruntime  # noqa: F401

        return
    if kind == "openvino":
        import openvino

        openvino.Core()  # the CPU plugin loads with the first Core: code, not the model
        return
    import torch
    from transformers import AutoConfig, AutoTokenizer  # noqa: F401
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    try:
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(AutoConfig.from_pretrained(str(path)))]
    except (KeyError, OSError, ValueError):
        pass  # unusual config: the class is then imported while loading and counted with the model
    if device == "cuda":
        torch.cuda.init()


def gpu_process_memory() -> int | None:
    """Device memory nvidia-smi attributes to this process, in bytes (None when it cannot tell)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(float(used.strip()) * 2**20)
    return None


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
