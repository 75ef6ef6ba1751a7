"""The output directory of `bertc optimize` and `bertc run`: its files, its state, and when it may be (re)used."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bertc.artifact import check_writable
from bertc.errors import BertcError
from bertc.jsonio import write_json

# The run state, the recipe it ran, the summary table and the side-by-side bench; artifacts go under stages/.
STATE_FILE, RECIPE_FILE, SUMMARY_FILE, BENCH_FILE = "optimize.json", "recipe.toml", "summary.md", "bench.json"
STAGES_DIR = "stages"
STATE_FORMAT = "bertc-optimize"


def check_out_dir(out: Path, record: dict, resume: bool, overwrite: bool) -> dict | None:
    """Fail early on an output that may not be replaced; with ``resume`` return the earlier run's state.

    ``record`` holds the options a resumed run must share with the interrupted one.
    """
    state = out / STATE_FILE
    if resume and overwrite:
        raise BertcError("give --resume (continue the run in --out) or --overwrite (start it again), not both")
    check_writable(out, "--out")
    if resume:
        if not state.is_file():
            raise BertcError(f"nothing to resume: {out} holds no bertc optimize run ({STATE_FILE} is missing); "
                             "drop --resume")
        try:
            previous = json.loads(state.read_text())
        except (OSError, ValueError) as err:
            raise BertcError(f"cannot read {state} ({err}); the run in {out} cannot be resumed, start it again with "
                             "--overwrite") from err
        if not isinstance(previous, dict):
            raise BertcError(f"{state} is damaged; the run in {out} cannot be resumed, start it again with "
                             "--overwrite")
        old = previous.get("config", {})
        changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if changed:
            raise BertcError(f"--resume with different options than the run in {out} ({', '.join(changed)}); repeat "
                             "the original command with --resume, or pick another --out")
        return previous
    if out.exists():
        if not overwrite:
            raise BertcError(f"output {out} already exists; pass --resume to continue the run in it, --overwrite to "
                             "start again, or choose another --out")
        if not out.is_dir() or (any(out.iterdir()) and not state.is_file()):
            raise BertcError(f"{out} is not a bertc optimize output and bertc will not delete it; choose another "
                             "--out")
    return None


def start_out_dir(out: Path, record: dict, overwrite: bool, previous: dict | None) -> dict:
    """Create (or, with ``overwrite``, replace) the output; returns the run state to fill in, marked unfinished."""
    if overwrite and previous is None and out.exists():
        shutil.rmtree(out)
    (out / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    state = previous or {"format": STATE_FORMAT, "format_version": 1, "config": record, "nodes": {}}
    state["finished"] = False
    return state


@contextmanager
def kept_for_resume(out: Path, created: bool) -> Iterator[None]:
    """Run the body of a run in ``out``. When it fails before anything was built (no artifact or work directory
    under stages/), an ``out`` this run created is removed; otherwise it is kept and the error says how to
    continue."""
    try:
        yield
    except BaseException as err:
        stages = out / STAGES_DIR
        built = stages.is_dir() and any(stages.iterdir())
        if created and not built:
            shutil.rmtree(out, ignore_errors=True)
        elif built and isinstance(err, BertcError):
            if "--resume" in str(err):
                raise
            raise BertcError(f"{str(err).rstrip('.')}. What was built so far is kept in {out}; repeat the command "
                             "with --resume to continue from there") from err
        raise


def save_state(out: Path, state: dict) -> None:
    write_json(out / STATE_FILE, state)


def mark_finished(state: dict, summary: dict) -> None:
    """Record that the run finished, with its result (the winner and why)."""
    state.update(finished=True, result={k: summary[k] for k in ("winner", "shipped_baseline", "text")})
