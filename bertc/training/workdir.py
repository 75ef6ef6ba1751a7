"""Work directories: where a training run writing ``out`` keeps its checkpoints, so ``--resume`` can find them.

A run writing ``runs/model`` works in the hidden sibling ``runs/.model.bertc-work``: the options it started with
(``CONFIG_FILE``), its checkpoints and its log. ``--resume`` continues only a run with the same options; without
it, checkpoints left by an interrupted run are an error, so a long run is never thrown away by accident.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bertc.errors import BertcError

CHECKPOINTS = "checkpoints"
CONFIG_FILE = "train_config.json"


def is_main_process() -> bool:
    """True except on the non-zero ranks of a data-parallel run, which leave files to rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def work_dir_for(out: Path | str) -> Path:
    """Where checkpoints of a run writing ``out`` live, so ``--resume`` can find them."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.bertc-work"


def prepare_work_dir(work_dir: Path, config_record: dict, resume: bool) -> str | None:
    """Set up the directory that holds checkpoints; return the checkpoint to resume from, if any."""
    saved_config = work_dir / CONFIG_FILE
    if not resume:
        if latest_checkpoint(work_dir / CHECKPOINTS) and is_main_process():
            raise BertcError(f"an interrupted run left checkpoints in {work_dir}; pass --resume to continue it, "
                             "or delete that directory to start over")
        if is_main_process():
            shutil.rmtree(work_dir, ignore_errors=True)  # holds no checkpoint: nothing to lose
            work_dir.mkdir(parents=True)
            saved_config.write_text(json.dumps(config_record, indent=2))
        return None
    check_resume_record(saved_config, config_record, "run")
    return latest_checkpoint(work_dir / CHECKPOINTS)


def check_resume_record(saved: Path, record: dict, what: str) -> None:
    """``--resume`` continues the interrupted run only with its options, which it left in ``saved``."""
    if not saved.is_file():
        raise BertcError(f"nothing to resume: {saved.parent} holds no interrupted {what}; drop --resume")
    previous = json.loads(saved.read_text())
    changed = sorted(k for k in set(previous) | set(record) if previous.get(k) != record.get(k))
    if changed:
        raise BertcError(f"--resume with different options than the interrupted run ({', '.join(changed)}); "
                         "repeat the original command with --resume")


def latest_checkpoint(directory: Path) -> str | None:
    """The newest complete checkpoint; a checkpoint killed while being written is skipped."""
    if not directory.is_dir():
        return None
    complete = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
                and p.name.split("-")[-1].isdigit()]
    if not complete:
        return None
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1])))


def remove_work_dir(work_dir: Path) -> None:
    """Delete a finished run's work directory (rank 0 only)."""
    if is_main_process():
        shutil.rmtree(work_dir, ignore_errors=True)


def has_checkpoint(work_dir: Path) -> bool:
    """Whether ``--resume`` can continue a training run from ``work_dir``."""
    return latest_checkpoint(work_dir / CHECKPOINTS) is not None


@contextmanager
def cleaned_up_on_failure(work_dir: Path, *, resume: bool,
                          resumable: Callable[[Path], bool] = has_checkpoint) -> Iterator[None]:
    """Run a stage's work in ``work_dir``; when it fails, remove the directory unless ``resumable`` says
    ``--resume`` can continue from it, and then add that to the error.

    A directory that was already there when a ``--resume`` run started is the user's and stays.
    """
    existed = work_dir.exists()
    try:
        yield
    except BaseException as err:
        if is_main_process():
            if resumable(work_dir):
                note = f"the checkpoint in {work_dir} lets --resume continue"
                if "--resume" not in str(err):  # the work directory's own errors already say what to do
                    if isinstance(err, BertcError):
                        err.args = (f"{err}; {note}",)
                    else:
                        err.add_note(note)
            elif not (resume and existed):
                shutil.rmtree(work_dir, ignore_errors=True)
        raise
