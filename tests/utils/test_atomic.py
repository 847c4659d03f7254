"""Atomic writes and the clean-up of killed writers' leftovers (utils.atomic)."""

import os
import socket
import subprocess
import sys

import pytest

from romanimpreprocess.utils.atomic import (
    TEMP_PREFIX,
    atomic_directory,
    atomic_write,
    remove_stale_temporaries,
    stale_temporaries,
    temp_owner,
    temp_prefix,
)


def dead_pid():
    """The pid of a process that has ended (a child started and waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temp_dir(directory, host, pid, holding=None):
    """A temporary directory named as writer ``pid`` on ``host`` would name it."""
    path = directory / f"{TEMP_PREFIX}{host}-{pid}-x1y2"
    path.mkdir()
    if holding:
        (path / holding).write_bytes(b"half a file")
    return path


def test_owner_is_read_back_from_the_name():
    assert temp_owner(temp_prefix() + "abc") == (socket.gethostname(), os.getpid())
    assert temp_owner(f"{TEMP_PREFIX}node-7-b-123-q") == ("node-7-b", 123)
    for name in (
        f"{TEMP_PREFIX}killed",
        f"{TEMP_PREFIX}abc",
        "x",
        f"{TEMP_PREFIX}h-1-",
    ):
        assert temp_owner(name) is None


def test_only_dead_writers_of_this_host_are_stale(tmp_path):
    host = socket.gethostname()
    dead = temp_dir(tmp_path, host, dead_pid(), holding="x_cal.asdf")
    other_file = temp_dir(tmp_path, host, dead_pid(), holding="y_cal.asdf")
    running = temp_dir(tmp_path, host, os.getpid(), holding="x_cal.asdf")
    remote = temp_dir(tmp_path, "another-node", dead_pid(), holding="x_cal.asdf")
    unnamed = tmp_path / f"{TEMP_PREFIX}killed"
    unnamed.mkdir()
    assert stale_temporaries(tmp_path, holding="x_cal.asdf") == [str(dead)]
    assert sorted(stale_temporaries(tmp_path)) == sorted([str(dead), str(other_file)])
    assert remove_stale_temporaries(tmp_path, holding="x_cal.asdf") == [str(dead)]
    assert not dead.exists()
    for kept in (other_file, running, remote, unnamed):
        assert kept.exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_a_dead_writer_not_yet_reaped_is_stale(tmp_path):
    # a killed worker stays a zombie until its parent reaps it: its leftover is stale
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # wait until it has ended, without reaping it
            with open(f"/proc/{proc.pid}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            subprocess.run(["sleep", "0.01"], check=True)
        else:
            pytest.fail("the child did not end")
        left = temp_dir(tmp_path, socket.gethostname(), proc.pid, holding="z.asdf")
        assert stale_temporaries(tmp_path, holding="z.asdf") == [str(left)]
    finally:
        proc.wait()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def explode(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_renames_into_place_and_cleans_dead_leftovers(tmp_path):
    stale = temp_dir(tmp_path, socket.gethostname(), dead_pid(), holding="out.bin")
    seen = []

    def write(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"new")

    path = atomic_write(tmp_path / "sub" / ".." / "out.bin", write)
    assert path == str(tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    assert os.path.basename(seen[0]) == "out.bin"
    assert os.path.basename(os.path.dirname(seen[0])).startswith(temp_prefix())
    assert not stale.exists()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_directory_is_removed_after_the_block(tmp_path):
    with atomic_directory(tmp_path / "deep" / "a.asdf") as tmpdir:
        assert os.path.isdir(tmpdir)
        assert os.path.dirname(tmpdir) == str(tmp_path / "deep")
    assert not os.path.exists(tmpdir)
