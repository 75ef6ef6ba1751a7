"""What a run is recorded to have run on: CPU, cores, packages, commit, GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from importlib import metadata

import pytest

from bertc import environment as env

CPUINFO = ("processor\t: 0\nmodel name\t: Fake CPU 9000 @ 3.00GHz\n"
           "flags\t\t: fpu sse2 fma avx2 avx512f amx_int8 avx512_bf16 avx512bw\n")


class FakePath:
    """Stands in for pathlib.Path inside bertc.environment: /proc/cpuinfo reads as ``text`` (or fails)."""

    text: str | None = None

    def __init__(self, *_):
        pass

    def read_text(self):
        if self.text is None:
            raise OSError("no /proc here")
        return self.text


@pytest.fixture
def fresh_commit():
    env.git_commit.cache_clear()
    yield
    env.git_commit.cache_clear()


def test_cpu_model_and_flags_come_from_cpuinfo(monkeypatch):
    monkeypatch.setattr(env, "Path", type("Info", (FakePath,), {"text": CPUINFO}))
    assert env.cpu_model() == "Fake CPU 9000 @ 3.00GHz"
    assert env.cpu_flags() == ["avx2", "avx512f", "avx512_bf16", "amx_int8", "fma"]  # the int8/bf16 ones, fixed order


def test_without_cpuinfo_the_platform_answers(monkeypatch):
    monkeypatch.setattr(env, "Path", FakePath)
    monkeypatch.setattr(env.platform, "processor", lambda: "")
    monkeypatch.setattr(env.platform, "machine", lambda: "arm64")
    assert env.cpu_model() == "arm64"
    assert env.cpu_flags() == []


def test_usable_cores_are_the_ones_this_process_may_use():
    cores = env.usable_cores()
    assert cores >= 1
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_package_versions_skip_what_is_not_installed(monkeypatch):
    monkeypatch.setattr(env, "PACKAGES", ("numpy", "no-such-package-bertc-test"))
    assert env.package_versions() == {"numpy": metadata.version("numpy")}


def test_git_commit_is_the_checkout_head(fresh_commit):
    root = os.path.dirname(os.path.dirname(os.path.abspath(env.__file__)))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("bertc is not running from a git checkout")
    commit = env.git_commit()
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert commit.split("+")[0] == head.stdout.strip()


@pytest.mark.parametrize(("status", "expected"), [("", "abc123"), (" M bertc/cli.py", "abc123+dirty")])
def test_git_commit_marks_a_changed_work_tree(monkeypatch, fresh_commit, status, expected):
    def run(args, **_):
        out = "abc123\n" if args[1] == "rev-parse" else status
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(env.subprocess, "run", run)
    assert env.git_commit() == expected


@pytest.mark.parametrize("error", [OSError("no git"), subprocess.CalledProcessError(128, "git"),
                                   subprocess.TimeoutExpired("git", 5)])
def test_git_commit_is_none_without_git(monkeypatch, fresh_commit, error):
    def run(*_, **__):
        raise error

    monkeypatch.setattr(env.subprocess, "run", run)
    assert env.git_commit() is None


def fake_torch(cuda: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.get_num_threads = lambda: 7
    props = types.SimpleNamespace(name="Fake GPU", total_memory=80 * 2**30)
    torch.cuda = types.SimpleNamespace(is_available=lambda: cuda, get_device_properties=lambda _: props,
                                       device_count=lambda: 2)
    torch.version = types.SimpleNamespace(cuda="12.4")
    return torch


def test_gpu_info_without_torch_or_cuda_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert env.gpu_info() is None
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda=False))
    assert env.gpu_info() is None


def test_gpu_info_describes_the_first_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda=True))

    def smi(args, **_):
        return subprocess.CompletedProcess(args, 0, stdout="550.54\n", stderr="")

    monkeypatch.setattr(env.subprocess, "run", smi)
    assert env.gpu_info() == {"name": "Fake GPU", "count": 2, "memory_gib": 80.0, "cuda": "12.4", "driver": "550.54"}

    def no_smi(*_, **__):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(env.subprocess, "run", no_smi)
    assert env.gpu_info()["driver"] is None


def test_environment_is_json_ready_and_records_threads(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda=False))
    described = env.environment()
    assert set(described) == {"python", "platform", "cpu", "cpu_flags", "cores", "packages", "bertc_commit", "gpu",
                              "torch_threads"}
    assert described["torch_threads"] == 7 and described["gpu"] is None
    assert described["cores"] == env.usable_cores() and described["packages"]["numpy"] == metadata.version("numpy")
    json.dumps(described)
    given = env.environment(threads=3)
    assert given["threads"] == 3 and "torch_threads" not in given


def test_environment_without_torch_has_no_torch_threads(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    described = env.environment()
    assert "torch_threads" not in described and "threads" not in described and described["gpu"] is None
