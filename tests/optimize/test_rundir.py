"""The output directory of `bertc optimize` and `bertc run`: when it may be resumed, replaced, or must be left alone."""

from __future__ import annotations

import json

import pytest

from bertc.errors import BertcError
from bertc.optimize.rundir import (
    STAGES_DIR,
    STATE_FILE,
    STATE_FORMAT,
    check_out_dir,
    kept_for_resume,
    mark_finished,
    save_state,
    start_out_dir,
)

RECORD = {"train": "/data/train.tsv", "preset": "quick", "max_accuracy_drop": 1.0}


def earlier_run(out, record=RECORD, **state):
    out.mkdir()
    (out / STAGES_DIR).mkdir()
    (out / STAGES_DIR / "finetune").mkdir()
    save_state(out, {"format": STATE_FORMAT, "format_version": 1, "config": record, "nodes": {"finetune": {}},
                     "finished": False, **state})
    return out


def test_a_new_output_needs_no_flag(tmp_path):
    assert check_out_dir(tmp_path / "run", RECORD, resume=False, overwrite=False) is None


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(BertcError, match=r"^give --resume .* or --overwrite .*, not both$"):
        check_out_dir(tmp_path / "run", RECORD, resume=True, overwrite=True)


def test_resume_returns_the_earlier_state_when_the_options_match(tmp_path):
    out = earlier_run(tmp_path / "run")
    previous = check_out_dir(out, dict(RECORD), resume=True, overwrite=False)
    assert previous["nodes"] == {"finetune": {}} and previous["config"] == RECORD


def test_resume_with_other_options_names_every_changed_one(tmp_path):
    out = earlier_run(tmp_path / "run")
    changed = {**RECORD, "preset": "full", "seed": 1}
    del changed["train"]
    with pytest.raises(BertcError) as err:
        check_out_dir(out, changed, resume=True, overwrite=False)
    assert str(err.value).startswith(f"--resume with different options than the run in {out} (preset, seed, train)")


def test_nothing_to_resume(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(BertcError, match=f"nothing to resume: .*run holds no bertc optimize run \\({STATE_FILE} is "
                                         "missing\\); drop --resume"):
        check_out_dir(tmp_path / "run", RECORD, resume=True, overwrite=False)


def test_a_damaged_state_cannot_be_resumed(tmp_path):
    out = earlier_run(tmp_path / "run")
    (out / STATE_FILE).write_text('{"config": ')
    with pytest.raises(BertcError, match=f"cannot read .*{STATE_FILE} .*start it again with --overwrite$"):
        check_out_dir(out, RECORD, resume=True, overwrite=False)
    (out / STATE_FILE).write_text("[1, 2]")
    with pytest.raises(BertcError, match=f"{STATE_FILE} is damaged; the run in .* cannot be resumed"):
        check_out_dir(out, RECORD, resume=True, overwrite=False)


def test_an_existing_output_needs_resume_or_overwrite(tmp_path):
    out = earlier_run(tmp_path / "run")
    with pytest.raises(BertcError, match="already exists; pass --resume to continue the run in it, --overwrite"):
        check_out_dir(out, RECORD, resume=False, overwrite=False)
    assert check_out_dir(out, RECORD, resume=False, overwrite=True) is None


def test_overwrite_never_deletes_what_is_not_an_optimize_run(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(BertcError, match="is not a bertc optimize output and bertc will not delete it"):
        check_out_dir(precious, RECORD, resume=False, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(BertcError, match="is not a bertc optimize output"):
        check_out_dir(a_file, RECORD, resume=False, overwrite=True)
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", RECORD, resume=False, overwrite=True) is None  # nothing to lose


def test_start_replaces_an_earlier_run_with_overwrite(tmp_path):
    out = earlier_run(tmp_path / "run")
    state = start_out_dir(out, RECORD, overwrite=True, previous=None)
    assert state == {"format": STATE_FORMAT, "format_version": 1, "config": RECORD, "nodes": {}, "finished": False}
    assert [p.name for p in out.iterdir()] == [STAGES_DIR] and not any((out / STAGES_DIR).iterdir())


def test_start_keeps_the_built_stages_when_resuming(tmp_path):
    out = earlier_run(tmp_path / "run", finished=True, result={"winner": "x"})
    previous = check_out_dir(out, RECORD, resume=True, overwrite=False)
    state = start_out_dir(out, RECORD, overwrite=False, previous=previous)
    assert state["finished"] is False and state["nodes"] == {"finetune": {}}
    assert (out / STAGES_DIR / "finetune").is_dir()


def test_start_creates_a_new_output_with_its_stages_directory(tmp_path):
    out = tmp_path / "deep" / "run"
    start_out_dir(out, RECORD, overwrite=False, previous=None)
    assert (out / STAGES_DIR).is_dir()


def test_the_finished_state_records_the_result_only(tmp_path):
    state = {"config": RECORD, "nodes": {}, "finished": False}
    mark_finished(state, {"winner": "layers3-int8-dynamic", "shipped_baseline": False, "text": "Ship it.",
                          "rows": [{"big": "table"}], "best": "/run/best"})
    assert state["finished"] is True
    assert state["result"] == {"winner": "layers3-int8-dynamic", "shipped_baseline": False, "text": "Ship it."}
    (tmp_path / "run").mkdir()
    save_state(tmp_path / "run", state)
    assert json.loads((tmp_path / "run" / STATE_FILE).read_text()) == state


def test_a_run_that_failed_before_building_anything_removes_the_output_it_created(tmp_path):
    out = tmp_path / "run"
    start_out_dir(out, RECORD, overwrite=False, previous=None)
    with pytest.raises(BertcError, match=r"^no selection data$"):
        with kept_for_resume(out, created=True):
            raise BertcError("no selection data")
    assert not out.exists()


def test_a_run_that_built_something_is_kept_and_the_error_says_how_to_continue(tmp_path):
    out = tmp_path / "run"
    start_out_dir(out, RECORD, overwrite=False, previous=None)
    (out / STAGES_DIR / "finetune").mkdir()
    with pytest.raises(BertcError) as err:
        with kept_for_resume(out, created=True):
            raise BertcError("layers3 failed")
    assert str(err.value) == (f"layers3 failed. What was built so far is kept in {out}; repeat the command with "
                              "--resume to continue from there")
    assert (out / STAGES_DIR / "finetune").is_dir()
    with pytest.raises(KeyboardInterrupt):  # not a user error: re-raised as it is, the output kept
        with kept_for_resume(out, created=True):
            raise KeyboardInterrupt
    assert (out / STAGES_DIR / "finetune").is_dir()


def test_an_output_the_run_did_not_create_is_never_removed(tmp_path):
    out = earlier_run(tmp_path / "run")
    (out / STAGES_DIR / "finetune").rmdir()
    with pytest.raises(BertcError, match=r"^boom$"):
        with kept_for_resume(out, created=False):
            raise BertcError("boom")
    assert (out / STATE_FILE).is_file()
