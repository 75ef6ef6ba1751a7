"""How busy the machine is: other work makes every timing noisy, so bench measures it and says so."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bertc.console import console
from bertc.environment import usable_cores


def cpu_counters() -> tuple[float, float, float] | None:
    """(wall seconds, CPU seconds the whole machine spent busy, CPU seconds of this process and its children),
    from /proc/stat; None where there is none."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


def cores_used_by_others(start, end) -> float | None:
    """Cores other processes kept busy between two :func:`cpu_counters`. Not the load average: that counts this
    process too, so it reads "busy" right after bertc itself trained or benched."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return round(max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]), 2)


def other_load(warn: bool = False, seconds: float = 0.5) -> float | None:
    """Cores other processes use now (sampled over ``seconds``); other work makes every timing noisy, so say so."""
    start = cpu_counters()
    time.sleep(seconds)
    load = cores_used_by_others(start, cpu_counters())
    if warn and load is not None and load > 0.25 * usable_cores():
        console.print(f"warning: the machine is busy (other processes use {load:.1f} of {usable_cores()} cores); "
                      "timings will be noisy, and multi-threaded PyTorch suffers most. Bench on an idle machine "
                      "for figures you will quote", style="yellow")
    return load


def usable_threads() -> int:
    return usable_cores()


def choose_threads(requested: int | None) -> tuple[int, dict]:
    """Threads per variant (``--threads``, else all usable cores) and a record of where the number came from.

    The count is set explicitly for PyTorch and ONNX Runtime, so OMP_NUM_THREADS has no say; when it asks for
    another count, one warning line names both and the one used.
    """
    threads = requested or usable_threads()
    count = f"{threads} thread" + ("" if threads == 1 else "s")
    source = "--threads" if requested else "all usable cores"
    omp = os.environ.get("OMP_NUM_THREADS") or None  # set but empty: unset, as OpenMP reads it
    if omp is not None and omp.strip() != str(threads):
        if requested:
            text = f"--threads {threads} overrides OMP_NUM_THREADS={omp}: every variant runs with {count}"
        else:
            hint = f"--threads {omp.strip()}" if omp.strip().isdigit() and int(omp) > 0 else "--threads N"
            text = (f"OMP_NUM_THREADS={omp} is not used: every variant runs with {count} (all usable "
                    f"cores); pass {hint} to choose the count")
        console.print(f"warning: {text}", style="yellow", soft_wrap=True, markup=False, highlight=False)
    return threads, {"threads_from": source, "omp_num_threads": omp}
