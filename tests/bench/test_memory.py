from __future__ import annotations

import numpy as np
import pytest

from bertc.artifact import load_tokenizer
from bertc.bench.latency import Setting, make_batches
from bertc.bench.memory import peak_memory
from bertc.errors import BertcError


def tiny_batch(path):
    tokenizer = load_tokenizer(path)
    return make_batches(tokenizer, ["the movie was good", "bad plot"] * 4, None, Setting(8, 32), 64)[0]


@pytest.mark.parametrize("which", ["tiny_onnx", "tiny_artifact"])
def test_peak_memory_is_measured_in_a_fresh_child_process(which, request):
    path = request.getfixturevalue(which)
    memory = peak_memory(path, "cpu", 1, tiny_batch(path))
    assert memory["method"] == "child process, VmHWM"
    assert memory["batch_shape"] == [8, 32]
    assert memory["peak_rss_bytes"] >= memory["loaded_rss_bytes"] >= memory["baseline_rss_bytes"] > 10 * 2**20
    assert memory["model_rss_bytes"] == memory["peak_rss_bytes"] - memory["baseline_rss_bytes"]
    # the runtime's own import is excluded: a 25k-parameter model adds far less than PyTorch itself (~300 MB)
    assert memory["model_rss_bytes"] < 100 * 2**20


def test_a_failing_child_is_reported_as_one_line(tmp_path):
    with pytest.raises(BertcError, match="failed in its child process: .*not a bertc artifact"):
        peak_memory(tmp_path, "cpu", 1, {"input_ids": np.ones((1, 4), dtype=np.int64)})
