"""The worker task `process_exposure`, run in this process with stand-in runners."""

import logging
import os
import pathlib
import socket

import pytest

from romanimpreprocess.batch.exposures import exposures_from_l1
from romanimpreprocess.batch.outputs import TEMP_PREFIX, output_problem
from romanimpreprocess.batch.task import LOGGERS, log_path_for, process_exposure
from tests.batch.stand_in import exit_runner, image_runner
from tests.conftest import make_raw_model
from tests.utils.test_atomic import dead_pid, temp_dir


@pytest.fixture
def task(tmp_path):
    l1 = tmp_path / "e_uncal.asdf"
    make_raw_model(size=64).save(l1)
    params = tmp_path / "p.asdf"
    params.write_bytes(b"unused by the stand-in")
    (exp,) = exposures_from_l1([str(l1)], str(params), str(tmp_path / "out"))
    return exp.to_task(overwrite=False, log=None)


def test_done_then_skipped_then_overwritten(task):
    calls = []

    def runner(t):
        calls.append(t["name"])
        image_runner(t)

    first = process_exposure(task, runner)
    assert first["status"] == "done", first["error"]
    assert first["error"] is None and calls == ["e_uncal"]
    assert output_problem(task["output"], task["input"]) is None
    assert first["peak_rss_mb"] is None or first["peak_rss_mb"] > 10
    assert first["cpu_user_s"] >= 0 and first["cpu_sys_s"] >= 0

    second = process_exposure(task, runner)
    assert second["status"] == "skipped" and calls == ["e_uncal"]

    third = process_exposure({**task, "overwrite": True}, runner)
    assert third["status"] == "done" and calls == ["e_uncal", "e_uncal"]


def test_system_exit_is_a_failed_result(task):
    result = process_exposure(task, exit_runner)
    assert result["status"] == "failed"
    assert result["error"].startswith("SystemExit(-1)")
    # the traceback is in the exposure's log
    with open(result["log"]) as f:
        text = f.read()
    assert "SystemExit" in text and "Traceback" in text


def test_runner_that_writes_nothing_fails(task):
    result = process_exposure(task, lambda t: None)
    assert result["status"] == "failed"
    assert "the run ended but output does not exist" in result["error"]


def test_exposure_with_error_never_runs(task):
    called = []
    result = process_exposure(
        {**task, "error": "cfg.yaml: key(s) OUT missing"}, called.append
    )
    assert result["status"] == "failed" and called == []
    assert result["error"] == "cfg.yaml: key(s) OUT missing"


def test_log_file_gets_this_exposure_only_and_loggers_restored(task):
    before = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
            logging.getLogger(name).level,
        )
        for name in LOGGERS
    }

    def runner(t):
        logging.getLogger("romanimpreprocess.fake").info("step message %d", 42)
        logging.getLogger("stpipe.fake").warning("stpipe says hi")
        image_runner(t)

    result = process_exposure(task, runner)
    assert result["log"] == log_path_for(task["output"])
    with open(result["log"]) as f:
        text = f.read()
    assert "step message 42" in text and "stpipe says hi" in text
    assert "exposure e_uncal done" in text
    after = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
            logging.getLogger(name).level,
        )
        for name in LOGGERS
    }
    assert after == before
    # outside the task the file gets nothing more
    logging.getLogger("romanimpreprocess.fake").warning("later message")
    with open(result["log"]) as f:
        assert "later message" not in f.read()


def test_log_dir_option(task, tmp_path):
    log = log_path_for(task["output"], str(tmp_path / "logs"))
    result = process_exposure({**task, "log": log}, image_runner)
    assert result["log"] == str(tmp_path / "logs" / "e_cal.log")
    assert os.path.isfile(result["log"])


def test_leftover_temp_dir_removed_before_run(task):
    out_dir = os.path.dirname(task["output"])
    os.makedirs(out_dir)
    # left by a worker on this host that was killed while writing this output
    stale = temp_dir(
        pathlib.Path(out_dir),
        socket.gethostname(),
        dead_pid(),
        holding=os.path.basename(task["output"]),
    )
    result = process_exposure(task, image_runner)
    assert result["status"] == "done"
    assert not os.path.exists(stale)
    assert [n for n in os.listdir(out_dir) if n.startswith(TEMP_PREFIX)] == []


def test_relative_paths_resolve_against_task_cwd(task, tmp_path, monkeypatch):
    seen = []
    monkeypatch.chdir("/")
    process_exposure(
        {**task, "cwd": str(tmp_path)},
        lambda t: seen.append(os.path.abspath("rel.txt")),
    )
    assert seen == [str(tmp_path / "rel.txt")]
    assert os.getcwd() == "/"
