"""The README's serving snippet: plain onnxruntime + the saved tokenizer, no bertc, gives bertc's labels.

The snippet is taken from README.md (the python block right after the ``serve-onnx-snippet`` marker) and must be
identical to the copy below, so the README never shows untested code; a README without the marker or the snippet
fails.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bertc.inference.evaluation import predict

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- serve-onnx-snippet -->"
SNIPPET = '''\
import json

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

model_dir = "sst2-onnx"  # the --out of `bertc export` or `bertc quantize`
tokenizer = AutoTokenizer.from_pretrained(model_dir)
labels = json.load(open(f"{model_dir}/bertc.json"))["task"]["labels"]
options = ort.SessionOptions()
options.add_session_config_entry("session.force_spinning_stop", "1")  # threads spin only while a call runs
session = ort.InferenceSession(f"{model_dir}/model.onnx", options, providers=["CPUExecutionProvider"])
input_names = [i.name for i in session.get_inputs()]

texts = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
encoded = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
logits = session.run(["logits"], {name: encoded[name].astype(np.int64) for name in input_names})[0]
print([labels[i] for i in logits.argmax(-1)])
'''


def snippet_in(readme: str) -> str:
    """The python block right after the marker; fails when the marker or the block is missing."""
    assert readme.count(MARKER) == 1, f"README.md must hold {MARKER} once, right before the serving snippet"
    block = re.match(r"\s*```python\n(.*?)```", readme.split(MARKER, 1)[1], re.S)
    assert block, f"README.md has no ```python block right after {MARKER}"
    return block.group(1)


def readme_snippet() -> str:
    return snippet_in((REPO / "README.md").read_text())


def test_readme_snippet_is_the_tested_one():
    assert readme_snippet() == SNIPPET


@pytest.mark.parametrize("readme", [
    "# bertc\n\n```python\nprint(1)\n```\n",  # no marker
    f"# bertc\n{MARKER}\nSome text first.\n\n```python\nprint(1)\n```\n",  # the block is not right after it
    f"# bertc\n{MARKER}\n```bash\nbertc export\n```\n",  # not python
    f"{MARKER}\n```python\nprint(1)\n```\n{MARKER}\n",  # twice: which one is tested?
])
def test_a_readme_without_the_snippet_fails(readme):
    with pytest.raises(AssertionError):
        snippet_in(readme)


def test_plain_onnxruntime_snippet_gives_bertc_labels(tmp_path, onnx_artifact):
    snippet = readme_snippet()
    (tmp_path / "sst2-onnx").symlink_to(onnx_artifact)
    check = "\nimport sys\nassert not any(m == 'bertc' or m.startswith('bertc.') for m in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path, capture_output=True, text=True,
                            check=True)
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    texts = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    assert printed == [r["label"] for r in predict(onnx_artifact, texts)]
