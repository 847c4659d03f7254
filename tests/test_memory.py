"""Freed full-frame buffers are reused while a run lasts (romanimpreprocess._memory)."""

import resource

import numpy as np
import pytest

from romanimpreprocess import _memory
from romanimpreprocess._memory import reuse_freed_memory

PLANE = 2**24  # a full-frame float32 plane (4096²)


def _faults_of_a_second_plane():
    """Page faults of allocating and filling a plane right after freeing one."""
    first = np.ones(PLANE, np.float32)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = np.ones(PLANE, np.float32)
    del second
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(_memory._libc() is None, reason="needs glibc's mallopt")
def test_planes_are_reused_inside_and_given_back_after():
    outside = _faults_of_a_second_plane()
    assert outside > 0  # a fresh mapping: its pages fault in
    with reuse_freed_memory():
        with reuse_freed_memory():  # nested: the inner one changes nothing
            inside = _faults_of_a_second_plane()
        assert reuse_freed_memory.active
    assert inside == 0
    assert not reuse_freed_memory.active
    assert _faults_of_a_second_plane() > 0  # defaults again after the run


def test_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("RIP_KEEP_FREED_MEMORY", "0")
    assert _memory._libc() is None
    with reuse_freed_memory():
        assert not getattr(reuse_freed_memory, "active", False)


@pytest.mark.skipif(_memory._libc() is None, reason="needs glibc's mallopt")
def test_freed_planes_leave_on_request_inside_a_run():
    """return_freed_memory gives back what a run keeps: the next plane faults in."""
    with reuse_freed_memory():
        assert _faults_of_a_second_plane() == 0  # kept for reuse
        first = np.ones(PLANE, np.float32)
        del first
        _memory.return_freed_memory()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        second = np.ones(PLANE, np.float32)
        del second
        assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before > 0


@pytest.mark.skipif(_memory._libc() is None, reason="needs glibc's mallopt")
def test_reuse_stops_on_request_for_the_rest_of_a_run():
    """stop_reusing_freed_memory: every plane after it is a fresh mapping again."""
    with reuse_freed_memory():
        assert _faults_of_a_second_plane() == 0  # kept for reuse
        _memory.stop_reusing_freed_memory()
        assert _faults_of_a_second_plane() > 0
        assert _faults_of_a_second_plane() > 0  # not only once
    assert _faults_of_a_second_plane() > 0
    _memory.stop_reusing_freed_memory()  # outside a run: nothing to do


@pytest.mark.skipif(_memory._libc() is None, reason="needs glibc's mallopt")
def test_a_batch_worker_keeps_the_memory_for_its_next_exposure():
    """keep=True: what a run freed is still there, unfaulted, for the next run."""
    try:
        with reuse_freed_memory(keep=True):
            assert _faults_of_a_second_plane() == 0
        assert not reuse_freed_memory.active
        assert _faults_of_a_second_plane() == 0  # between two exposures
        with reuse_freed_memory(keep=True):
            assert _faults_of_a_second_plane() == 0
    finally:
        _memory._return_to_defaults(_memory._libc())  # this test process's malloc
    assert _faults_of_a_second_plane() > 0
