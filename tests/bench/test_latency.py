from __future__ import annotations

import time

import numpy as np
import pytest

from bertc.artifact import load_tokenizer, read_manifest
from bertc.bench.latency import (
    OrtBackend,
    Runner,
    Setting,
    check_device,
    check_fixed_lengths,
    make_batches,
    measure,
    onnx_session,
    open_backend,
    planned_calls,
    summarize,
)
from bertc.bench.results import speedup
from bertc.errors import BertcError

TEXTS = ["good", "the movie was really very good and the acting was superb", "bad film", "a dull plot",
         "it is fine", "the story was very boring and the acting was poor", "warm", "happy movie"]


def test_summarize_reports_percentiles_spread_and_throughput():
    rounds = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 10.0]]
    stats = summarize(rounds, batch_size=4)
    assert stats["runs"] == 10
    assert stats["p50_ms"] == pytest.approx(5.5)
    assert stats["mean_ms"] == pytest.approx(5.5)
    assert stats["p99_ms"] == pytest.approx(np.percentile(np.arange(1, 11), 99))
    assert stats["round_p50_ms"] == [2.0, 5.0, 8.5]
    assert stats["p50_spread"] == pytest.approx((8.5 - 2.0) / 5.5)
    assert stats["throughput"] == pytest.approx(4 * 1000 / 5.5)
    assert stats["throughput_min"] == pytest.approx(4 * 1000 / 8.5)  # slowest round's mean
    assert stats["throughput_max"] == pytest.approx(4 * 1000 / 2.0)


def test_speedup_is_taken_round_by_round():
    base = summarize([[10.0], [20.0]], 1)
    fast = summarize([[5.0], [5.0]], 1)
    ratio = speedup(fast, base)
    assert ratio["speedup"] == pytest.approx(15.0 / 5.0)
    assert (ratio["speedup_min"], ratio["speedup_max"]) == (pytest.approx(2.0), pytest.approx(4.0))


def test_real_lengths_pad_each_batch_to_its_longest_row(tiny_artifact):
    tokenizer = load_tokenizer(tiny_artifact)
    batches = make_batches(tokenizer, TEXTS, None, Setting(3, "real"), max_length=64)
    assert len(batches) == 3  # ceil(8 / 3): the pool covers the data once
    widths = [b["input_ids"].shape[1] for b in batches]
    for batch in batches:
        assert batch["input_ids"].dtype == np.int64
        assert batch["input_ids"].shape[0] == 3
        assert batch["attention_mask"].sum(axis=1).max() == batch["input_ids"].shape[1]  # no padding beyond it
        assert batch["attention_mask"][:, 0].all()  # right padding: real tokens first
    assert max(widths) < 64 and len(set(widths)) > 1


def test_fixed_lengths_attend_every_position(tiny_artifact):
    tokenizer = load_tokenizer(tiny_artifact)
    batches = make_batches(tokenizer, TEXTS, None, Setting(2, 24), max_length=64)
    for batch in batches:
        assert batch["input_ids"].shape == (2, 24)
        assert batch["attention_mask"].all()


def test_batches_follow_the_same_seeded_order(tiny_artifact):
    tokenizer = load_tokenizer(tiny_artifact)
    first = make_batches(tokenizer, TEXTS, None, Setting(2, "real"), 64, seed=3)
    again = make_batches(tokenizer, TEXTS, None, Setting(2, "real"), 64, seed=3)
    other = make_batches(tokenizer, TEXTS, None, Setting(2, "real"), 64, seed=4)
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again))
    assert not all(a["input_ids"].shape == b["input_ids"].shape and np.array_equal(a["input_ids"], b["input_ids"])
                   for a, b in zip(first, other))


class FakeBackend:
    """Records every call in a shared log; 'timed' calls are marked so the interleaving can be checked."""

    def __init__(self, name, log, sleep=0.0):
        self.name, self.log, self.sleep = name, log, sleep

    def prepare(self, batch):
        return batch

    def run(self, inputs):
        self.log.append((self.name, "untimed"))
        time.sleep(self.sleep)

    def timed(self, inputs):
        self.log.append((self.name, "timed"))
        time.sleep(self.sleep)
        return 1.0


def test_measure_interleaves_variants_round_robin_with_rotating_start():
    log = []
    runners = {name: Runner(FakeBackend(name, log), [{"input_ids": np.zeros((1, 2))}]) for name in "abc"}
    advanced = []
    times = measure(runners, warmup=2, runs=6, rounds=3, advance=advanced.append)
    assert {name: sum(len(r) for r in rounds) for name, rounds in times.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(len(r) == 2 for rounds in times.values() for r in rounds)
    timed_phase = log[6:]  # after 2 warm-up calls per variant
    starts = [timed_phase[i][0] for i in range(0, len(timed_phase), 3 * 3)]
    assert starts == ["a", "b", "c"]  # each round starts with the next variant
    blocks = [timed_phase[i:i + 3] for i in range(0, len(timed_phase), 3)]
    assert all(block[0][1] == "untimed" and {kind for _, kind in block[1:]} == {"timed"} for block in blocks)
    assert sum(advanced) == len(log) == planned_calls(3, warmup=2, runs=6, rounds=3)


def test_measure_with_duration_derives_call_counts_from_warmup_speed():
    log = []
    runners = {"slow": Runner(FakeBackend("slow", log, sleep=0.002), [{}]),
               "fast": Runner(FakeBackend("fast", log, sleep=0.0), [{}])}
    for runner in runners.values():  # fake timings: make timed() report its real duration
        backend = runner.backend
        backend.timed = (lambda b: lambda inputs: (time.sleep(b.sleep), 1000 * max(b.sleep, 1e-5))[1])(backend)
    times = measure(runners, warmup=1, runs=1, rounds=2, duration=0.02)
    assert sum(len(r) for r in times["slow"]) == 10  # 0.02 s / 2 ms
    assert sum(len(r) for r in times["fast"]) > 100


def test_pytorch_and_onnx_backends_time_the_tiny_model(tiny_artifact, tiny_onnx):
    tokenizer = load_tokenizer(tiny_artifact)
    batch = make_batches(tokenizer, TEXTS, None, Setting(4, "real"), 64)[0]
    for path, name in ((tiny_artifact, "pytorch-eager"), (tiny_onnx, "onnxruntime")):
        backend = open_backend(path, read_manifest(path), "cpu", threads=1)
        assert backend.name == name
        inputs = backend.prepare(batch)
        assert backend.timed(inputs) > 0


def test_cuda_without_a_gpu_is_a_user_error():
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    for kind in ("pytorch", "onnx"):
        with pytest.raises(BertcError, match="--device cuda"):
            check_device("cuda", kind)


@pytest.mark.gpu
def test_cuda_backends_time_on_the_gpu(tiny_artifact, tiny_onnx):
    import onnxruntime
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    tokenizer = load_tokenizer(tiny_artifact)
    batch = make_batches(tokenizer, TEXTS, None, Setting(4, 32), 64)[0]
    paths = [tiny_artifact] + ([tiny_onnx] if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else [])
    for path in paths:
        backend = open_backend(path, read_manifest(path), "cuda", threads=1)
        inputs = backend.prepare(batch)
        backend.run(inputs)
        assert backend.timed(inputs) > 0


def test_fixed_length_beyond_the_position_embeddings_is_refused(tiny_artifact):
    check_fixed_lengths(tiny_artifact, ("real", 128))
    with pytest.raises(BertcError, match="--seq-len 256 is longer"):
        check_fixed_lengths(tiny_artifact, ("real", 256))


def test_io_binding_path_gives_the_same_logits_as_session_run(tiny_onnx):
    """The binding code CUDA uses, run with CPU-resident OrtValues so it is checked without a GPU."""
    session = onnx_session(tiny_onnx, read_manifest(tiny_onnx), "cpu", threads=1)
    batch = make_batches(load_tokenizer(tiny_onnx), TEXTS, None, Setting(4, "real"), 64)[0]
    plain, bound = OrtBackend(session, "cpu"), OrtBackend(session, "cpu", io_binding=True)
    expected = session.run(["logits"], plain.prepare(batch))[0]
    binding = bound.prepare(batch)
    bound.run(binding)
    assert bound.timed(binding) > 0
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], expected, rtol=1e-5, atol=1e-6)
