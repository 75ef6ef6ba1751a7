"""The fixture directory of tests/test_bad_input.py, and how a row is checked: snapshots of every file, and
paths made unreadable or unwritable also for root (``open``, ``os.open``, ``os.mkdir`` and ``os.replace`` refuse
them)."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from bertc.bench.bench import bench
from bertc.bench.config import BenchConfig
from bertc.export.config import ExportConfig
from bertc.export.onnx import export
from tests.conftest import write_tsv


def toml_string(path: Path) -> str:
    return json.dumps(str(path))


def write_recipes(w: Path) -> None:
    base = (f'[recipe]\nformat = "bertc-recipe"\nversion = 1\nbaseline = {toml_string(w / "pt")}\n'
            'candidates = ["pt-onnx"]\n\n[select]\nmax_accuracy_drop = 1.0\n\n'
            f'[bench]\ndata = {toml_string(w / "data" / "validation.tsv")}\nsplit = "validation"\nbatch_sizes = [1]\n'
            'warmup = 1\nruns = 2\nrounds = 1\nmemory = false\n\n'
            f'[[stages]]\nname = "pt-onnx"\nkind = "export"\ninput = {toml_string(w / "pt")}\n'
            '[stages.config]\nverify_samples = 8\n')
    finetune = (f'\n[[stages]]\nname = "ft"\nkind = "finetune"\ninput = {toml_string(w / "model")}\n'
                f'[stages.config.data]\ntrain = {toml_string(w / "data")}\n[stages.config.train]\nmax_steps = 1\n')
    stage_input = f'input = {toml_string(w / "pt")}\n[stages.config]'
    bench_data = f"data = {toml_string(w / 'data' / 'validation.tsv')}"
    recipes = {
        "recipe": base, "empty": "", "truncated": base[:120],
        "lion": base + finetune + 'optimizer = "lion"\n', "schedule": base + finetune + 'schedule = "foo"\n',
        "sixteen": base + finetune + 'batch_size = "sixteen"\n', "nan": base + finetune + "lr = nan\n",
        "opset": base.replace("verify_samples = 8", "verify_samples = 8\nopset = 3"),
        "drop": base.replace("max_accuracy_drop = 1.0", "max_accuracy_drop = -1.0"),
        "inf-drop": base.replace("max_accuracy_drop = 1.0", "max_accuracy_drop = inf"),
        "kind": base.replace('kind = "export"', 'kind = "frobnicate"'),
        "onnx-input": base.replace(stage_input, f'input = {toml_string(w / "onnx")}\n[stages.config]'),
        "missing-baseline": base.replace(f"baseline = {toml_string(w / 'pt')}",
                                         f"baseline = {toml_string(w / 'missing')}"),
    }
    for name, data in (("wrongcols", "wrongcols.tsv"), ("otherlabels", "otherlabels.tsv"),
                       ("missing-data", "missing.tsv")):
        recipes[name] = base.replace(bench_data, f"data = {toml_string(w / data)}")
    only_finetune = base.split("[[stages]]")[0].replace('"pt-onnx"', "").replace(
        f"baseline = {toml_string(w / 'pt')}", 'baseline = "ft"') + finetune.replace(
        toml_string(w / "data"), toml_string(w / "wrongcols.tsv"))
    recipes["finetune-wrongcols"] = only_finetune  # fails in its first stage: the run directory goes again
    for name, text in recipes.items():
        (w / f"{name}.toml").write_text(text)
    (w / "garbage.toml").write_bytes(b"\x00\xff\xfe[[[ not toml \x01")


def damaged_copy(src: Path, dest: Path, file: str, keep_bytes: int) -> None:
    shutil.copytree(src, dest)
    data = (src / file).read_bytes()[:keep_bytes]
    (dest / file).write_bytes(data)


def build_world(w: Path, pretrained: Path, artifact: Path) -> Path:
    """Every input the rows of tests/test_bad_input.py use, in ``w``: a tiny pretrained model and a fine-tuned
    artifact (copies), its ONNX export, data, results and recipes, and damaged or mismatched versions of each."""
    data = w / "data"
    data.mkdir(parents=True)
    write_tsv(data / "train.tsv", 40, seed=1)
    write_tsv(data / "validation.tsv", 16, seed=2)
    write_tsv(data / "test.tsv", 16, seed=3)
    shutil.copytree(pretrained, w / "model")
    shutil.copytree(artifact, w / "pt")
    export(w / "pt", ExportConfig(data=str(data / "test.tsv"), verify_samples=8), w / "onnx")
    bench([w / "pt", w / "onnx"], BenchConfig(data=str(data), batch_sizes=(1,), seq_lens=(16,), warmup=1, runs=2,
                                              rounds=1, memory=False), w / "results.json")
    files = {"empty.tsv": "", "header.tsv": "sentence\tlabel\n", "ragged.tsv": "a\tb\tc\nx\n1\t2\t3\t4\t5\n",
             "nan.tsv": "sentence\tlabel\ngood film\tnan\nbad film\tNaN\n",
             "wrongcols.tsv": "body\tgold\na good film\t1\n",
             "otherlabels.tsv": "sentence\tlabel\ngood\tpos\nbad\tneg\nfine\tpos\ndull\tneg\n",
             "empty.json": "", "emptyobj.json": "{}", "afile": "a regular file\n"}
    for name, text in files.items():
        (w / name).write_text(text)
    (w / "garbage.tsv").write_bytes(b"\x00\xff\xfe garbage\n\x01\x02")
    results = json.loads((w / "results.json").read_text())
    (w / "trunc.json").write_text(json.dumps(results)[:200])
    del results["variants"]
    (w / "no-variants.json").write_text(json.dumps(results))
    for name in ("emptydir", "garbage-art", "ro", "tmp", "existing"):
        (w / name).mkdir()
    (w / "existing" / "keep.txt").write_text("precious")
    (w / "garbage-art" / "bertc.json").write_text("{not json")
    damaged_copy(w / "pt", w / "trunc-st", "model.safetensors", 100)
    damaged_copy(w / "model", w / "trunc-model", "model.safetensors", 100)
    damaged_copy(w / "onnx", w / "trunc-onnx", "model.onnx", 100)
    damaged_copy(w / "onnx", w / "empty-onnx", "model.onnx", 0)
    shutil.copytree(w / "pt", w / "pt-other")
    manifest = json.loads((w / "pt-other" / "bertc.json").read_text())
    manifest["task"]["labels"] = ["neg", "pos"]
    (w / "pt-other" / "bertc.json").write_text(json.dumps(manifest))
    write_recipes(w)
    return w


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: the sha256 of each file, "dir" for directories."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def deny(monkeypatch, target: Path, *, write: bool) -> None:
    """Make ``target`` (a file, or a directory and everything in it) unreadable or unwritable, also for root."""
    target_path = os.path.realpath(target)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == target_path or real.startswith(target_path + os.sep)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(os.fspath(path)))

    real_open, real_os_open, real_mkdir, real_replace = builtins.open, os.open, os.mkdir, os.replace

    def open_(file, mode="r", *args, **kwargs):
        writing = any(c in mode for c in "wax+")
        if writing == write and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | getattr(os, "O_TMPFILE", 0)))
        if writing == write and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if write and inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if write and inside(dst):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    for module in (builtins, io):
        monkeypatch.setattr(module, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)


def remove_new(root: Path, before: dict[str, str]) -> None:
    """Clean up after a row that failed its check, so the next rows start from the same directory."""
    for relative in sorted(set(snapshot(root)) - set(before), key=len):
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
