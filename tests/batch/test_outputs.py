"""The resume rule (`output_problem`) and leftovers of killed writes."""

import os
import socket

import numpy as np
import pytest
from roman_datamodels import datamodels as dm

from romanimpreprocess.batch.outputs import (
    output_problem,
    remove_stale_temp_dirs,
    stale_temp_dirs,
)
from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.stpipe import atomic_save
from tests.conftest import make_raw_model
from tests.utils.test_atomic import dead_pid, temp_dir

SIZE = 64


def _l2(shape):
    model = dm.ImageModel.create_fake_data(shape=shape)
    model.data = np.ones(shape, model.data.dtype)
    model.dq = np.zeros(shape, model.dq.dtype)
    model.err = np.ones(shape, model.err.dtype)
    return model


@pytest.fixture
def l1(tmp_path):
    path = tmp_path / "x_uncal.asdf"
    make_raw_model(size=SIZE).save(path)
    return str(path)


@pytest.fixture
def good_output(tmp_path):
    science = SIZE - 2 * REF_BORDER
    return atomic_save(_l2((science, science)), str(tmp_path / "out" / "x_cal.asdf"))


def test_complete_output_has_no_problem(good_output, l1):
    assert output_problem(good_output, l1) is None
    assert output_problem(good_output) is None


def test_missing_empty_directory(tmp_path):
    assert output_problem(str(tmp_path / "nope.asdf")) == "output does not exist"
    empty = tmp_path / "empty.asdf"
    empty.write_bytes(b"")
    assert output_problem(str(empty)) == "output file is empty"
    assert "not a regular file" in output_problem(str(tmp_path))


def test_not_asdf_and_wrong_model(tmp_path, l1):
    junk = tmp_path / "junk.asdf"
    junk.write_bytes(b"this is not asdf at all\n" * 10)
    assert output_problem(str(junk)).startswith("output does not open")
    # an L1 file where the L2 should be
    assert "ScienceRawModel, not an L2 ImageModel" in output_problem(l1)


def test_truncated_output_is_not_complete(good_output):
    size = os.path.getsize(good_output)
    with open(good_output, "r+b") as f:
        f.truncate(size - 200)
    problem = output_problem(good_output)
    assert problem is not None


def test_shape_must_match_the_input_science_area(tmp_path, l1):
    wrong = atomic_save(_l2((SIZE, SIZE)), str(tmp_path / "w_cal.asdf"))
    problem = output_problem(wrong, l1)
    assert "does not match the input's science area" in problem
    science = SIZE - 2 * REF_BORDER
    assert f"({science}, {science})" in problem
    # without the input (or an unreadable one) the shape check is skipped
    assert output_problem(wrong) is None
    assert output_problem(wrong, str(tmp_path / "gone.asdf")) is None


def test_stale_temp_dirs_only_those_holding_this_output(tmp_path):
    host = socket.gethostname()
    out = tmp_path / "x_cal.asdf"
    mine = temp_dir(tmp_path, host, dead_pid(), holding="x_cal.asdf")
    other = temp_dir(tmp_path, host, dead_pid(), holding="y_cal.asdf")
    # a writer of this output still running (this process): never touched
    running = temp_dir(tmp_path, host, os.getpid(), holding="x_cal.asdf")
    unrelated = tmp_path / "keep"
    unrelated.mkdir()
    (unrelated / "x_cal.asdf").write_bytes(b"user file")
    assert stale_temp_dirs(str(out)) == [str(mine)]
    assert remove_stale_temp_dirs(str(out)) == [str(mine)]
    assert not mine.exists() and other.exists() and unrelated.exists()
    assert running.exists()
    # a stray temporary directory is never taken for the output
    assert output_problem(str(out)) == "output does not exist"
