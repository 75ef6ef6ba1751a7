"""The README's serving snippet: plain onnxruntime + the saved tokenizer, no bertc, gives bertc's labels.

The snippet is taken from README.md (the python block after the ``serve-onnx-snippet`` marker). Until the README
has it, the copy below is run; once it has, both must be identical so the README never shows untested code.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from bertc.inference import predict

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
session = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
input_names = [i.name for i in session.get_inputs()]

texts = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
encoded = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
logits = session.run(["logits"], {name: encoded[name].astype(np.int64) for name in input_names})[0]
print([labels[i] for i in logits.argmax(-1)])
'''


def readme_snippet() -> str | None:
    readme = REPO / "README.md"
    if not readme.is_file() or MARKER not in readme.read_text():
        return None
    after = readme.read_text().split(MARKER, 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_readme_snippet_is_the_tested_one():
    snippet = readme_snippet()
    assert snippet is None or snippet == SNIPPET


def test_plain_onnxruntime_snippet_gives_bertc_labels(tmp_path, onnx_artifact):
    snippet = readme_snippet() or SNIPPET
    (tmp_path / "sst2-onnx").symlink_to(onnx_artifact)
    check = "\nimport sys\nassert not any(m == 'bertc' or m.startswith('bertc.') for m in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path, capture_output=True, text=True,
                            check=True)
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    texts = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat"]
    assert printed == [r["label"] for r in predict(onnx_artifact, texts)]
