import json

import pytest

from bertc.errors import BertcError
from bertc.training.workdir import (
    CHECKPOINTS,
    CONFIG_FILE,
    check_resume_record,
    cleaned_up_on_failure,
    has_checkpoint,
    is_main_process,
    latest_checkpoint,
    prepare_work_dir,
    remove_work_dir,
    work_dir_for,
)


def checkpoint(work_dir, step, complete=True):
    directory = work_dir / CHECKPOINTS / f"checkpoint-{step}"
    directory.mkdir(parents=True)
    if complete:
        (directory / "trainer_state.json").write_text("{}")
    return directory


def test_work_dir_is_a_hidden_sibling_of_the_output(tmp_path, monkeypatch):
    assert work_dir_for(tmp_path / "runs" / "model") == tmp_path / "runs" / ".model.bertc-work"
    monkeypatch.chdir(tmp_path)
    assert work_dir_for("model") == tmp_path / ".model.bertc-work"


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "none") is None
    checkpoint(tmp_path, 9)
    checkpoint(tmp_path, 12)
    checkpoint(tmp_path, 15, complete=False)  # killed while being written
    (tmp_path / CHECKPOINTS / "checkpoint-last").mkdir()
    assert latest_checkpoint(tmp_path / CHECKPOINTS) == str(tmp_path / CHECKPOINTS / "checkpoint-12")


def test_a_fresh_run_records_its_options(tmp_path):
    work = tmp_path / ".m.bertc-work"
    (work / "leftover").mkdir(parents=True)  # no checkpoint: nothing to lose
    assert prepare_work_dir(work, {"lr": 0.1}, resume=False) is None
    assert json.loads((work / CONFIG_FILE).read_text()) == {"lr": 0.1}
    assert not (work / "leftover").exists()


def test_checkpoints_are_kept_unless_resumed(tmp_path):
    work = tmp_path / ".m.bertc-work"
    prepare_work_dir(work, {"lr": 0.1}, resume=False)
    checkpoint(work, 6)
    with pytest.raises(BertcError, match="left checkpoints in .*; pass --resume"):
        prepare_work_dir(work, {"lr": 0.1}, resume=False)
    assert prepare_work_dir(work, {"lr": 0.1}, resume=True) == str(work / CHECKPOINTS / "checkpoint-6")
    with pytest.raises(BertcError, match=r"different options than the interrupted run \(lr\)"):
        prepare_work_dir(work, {"lr": 0.2}, resume=True)


def test_resume_record_names_what_changed(tmp_path):
    saved = tmp_path / CONFIG_FILE
    with pytest.raises(BertcError, match="nothing to resume: .* holds no interrupted bertc prune run; drop --resume"):
        check_resume_record(saved, {}, "bertc prune run")
    saved.write_text(json.dumps({"heads": 2, "lr": 0.1, "gone": 1}))
    check_resume_record(saved, {"lr": 0.1, "heads": 2, "gone": 1}, "run")
    with pytest.raises(BertcError, match=r"\(gone, heads, new\)"):
        check_resume_record(saved, {"heads": 3, "lr": 0.1, "new": 0}, "run")


def test_only_rank_zero_touches_the_work_dir(tmp_path, monkeypatch):
    work = tmp_path / ".m.bertc-work"
    work.mkdir()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    remove_work_dir(work)
    assert work.is_dir()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    remove_work_dir(work)
    assert not work.exists()


def fail_in(work, error, *, resume=False, resumable=has_checkpoint, make=None):
    with pytest.raises(type(error)) as caught:
        with cleaned_up_on_failure(work, resume=resume, resumable=resumable):
            if make:
                make(work)
            raise error
    return caught.value


def test_a_failure_with_nothing_to_resume_removes_the_work_dir(tmp_path):
    work = tmp_path / ".m.bertc-work"
    err = fail_in(work, BertcError("boom"), make=lambda w: prepare_work_dir(w, {"lr": 0.1}, resume=False))
    assert str(err) == "boom" and not work.exists()
    err = fail_in(work, KeyboardInterrupt(), make=lambda w: prepare_work_dir(w, {"lr": 0.1}, resume=False))
    assert not work.exists()


def test_a_failure_after_a_checkpoint_keeps_it_and_says_so(tmp_path):
    work = tmp_path / ".m.bertc-work"
    err = fail_in(work, BertcError("boom"), make=lambda w: checkpoint(w, 3))
    assert str(err) == f"boom; the checkpoint in {work} lets --resume continue"
    assert latest_checkpoint(work / CHECKPOINTS)
    bug = fail_in(work, ValueError("a bug"), resume=True)  # not a user error: the traceback gets a note
    assert str(bug) == "a bug" and bug.__notes__ == [f"the checkpoint in {work} lets --resume continue"]
    err = fail_in(work, BertcError("pass --resume to continue it"), resume=True)
    assert str(err) == "pass --resume to continue it"  # already says what to do


def test_a_resumed_run_leaves_a_work_dir_it_did_not_create(tmp_path, monkeypatch):
    work = tmp_path / ".m.bertc-work"
    work.mkdir()
    (work / CONFIG_FILE).write_text("{}")
    fail_in(work, BertcError("boom"), resume=True)
    assert (work / CONFIG_FILE).is_file()
    fail_in(work, BertcError("boom"), resumable=lambda w: (w / "step.json").is_file())  # a stage's own test
    assert not work.exists()
    monkeypatch.setenv("RANK", "1")  # other ranks leave files to rank 0
    fail_in(work, BertcError("boom"), make=lambda w: w.mkdir())
    assert work.is_dir()
