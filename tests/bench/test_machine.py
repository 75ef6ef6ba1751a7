"""How busy the machine is while bench measures."""

from __future__ import annotations

import os

import pytest

from bertc.bench import machine
from bertc.bench.machine import choose_threads, cores_used_by_others, cpu_counters, other_load, usable_threads
from bertc.environment import usable_cores


def test_cores_used_by_others_leaves_out_this_process():
    # (wall s, machine busy CPU s, this process's CPU s): 3 busy seconds in 2, 2 of them ours -> 0.5 cores
    assert cores_used_by_others((0.0, 10.0, 5.0), (2.0, 13.0, 7.0)) == 0.5
    assert cores_used_by_others((0.0, 10.0, 5.0), (4.0, 20.0, 5.0)) == 2.5
    assert cores_used_by_others((0.0, 10.0, 5.0), (3.0, 10.0, 5.0)) == 0.0
    assert cores_used_by_others((0.0, 10.0, 5.0), (1.0, 10.5, 6.0)) == 0.0  # tick rounding never goes negative


def test_cores_used_by_others_without_counters_or_time_is_unknown():
    assert cores_used_by_others(None, (1.0, 1.0, 1.0)) is None
    assert cores_used_by_others((1.0, 1.0, 1.0), None) is None
    assert cores_used_by_others((1.0, 1.0, 1.0), (1.0, 2.0, 1.0)) is None  # no time passed


def test_cpu_counters_grow_with_this_process_busy():
    first = cpu_counters()
    if first is None:
        pytest.skip("no /proc/stat on this system")
    sum(i * i for i in range(300_000))
    second = cpu_counters()
    assert second[0] > first[0] and second[1] >= first[1] and second[2] > first[2] >= 0


def test_without_proc_stat_there_are_no_counters(monkeypatch):
    class Missing:
        def __init__(self, *_):
            pass

        def read_text(self):
            raise OSError("no /proc")

    monkeypatch.setattr(machine, "Path", Missing)
    assert cpu_counters() is None
    assert other_load(seconds=0.0) is None


def test_other_load_warns_only_when_others_use_a_quarter_of_the_cores(monkeypatch):
    printed = []
    monkeypatch.setattr(machine.console, "print", lambda text, **_: printed.append(text))
    busy = iter([(0.0, 0.0, 0.0), (1.0, float(usable_cores()), 0.0)])  # others kept every core busy
    monkeypatch.setattr(machine, "cpu_counters", lambda: next(busy))
    assert other_load(warn=True, seconds=0.0) == usable_cores()
    assert len(printed) == 1 and printed[0].startswith("warning: the machine is busy (other processes use")
    idle = iter([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)])
    monkeypatch.setattr(machine, "cpu_counters", lambda: next(idle))
    assert other_load(warn=True, seconds=0.0) == 0.0 and len(printed) == 1


def test_usable_threads_are_the_usable_cores():
    assert usable_threads() == usable_cores() >= 1
    if hasattr(os, "sched_getaffinity"):
        assert usable_threads() == len(os.sched_getaffinity(0))


def test_threads_that_override_omp_num_threads_say_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(4) == (4, {"threads_from": "--threads", "omp_num_threads": "2"})
    printed = capsys.readouterr().out
    assert printed == "warning: --threads 4 overrides OMP_NUM_THREADS=2: every variant runs with 4 threads\n"


def test_omp_num_threads_left_unused_by_default_says_so(monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", str(usable_cores() + 1))
    assert choose_threads(None) == (usable_cores(), {"threads_from": "all usable cores",
                                                    "omp_num_threads": str(usable_cores() + 1)})
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and printed.startswith(f"warning: OMP_NUM_THREADS={usable_cores() + 1} is not "
                                                            f"used: every variant runs with {usable_cores()} threads")
    assert f"pass --threads {usable_cores() + 1} to choose the count" in printed


@pytest.mark.parametrize("omp", [None, "", "3"])
def test_no_warning_when_nothing_disagrees(monkeypatch, capsys, omp):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert choose_threads(3) == (3, {"threads_from": "--threads", "omp_num_threads": omp or None})
    assert capsys.readouterr().out == ""
