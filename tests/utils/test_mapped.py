"""`utils.mapped.release_pages`: mapped pages leave the process, values stay."""

import re
import sys

import numpy as np
import pytest

from romanimpreprocess.biascorr import biascorr
from romanimpreprocess.utils.mapped import mapped_buffer, release_pages

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")


def _rss_file_mib():
    with open("/proc/self/status") as status:
        return int(re.search(r"RssFile:\s+(\d+)", status.read()).group(1)) / 1024


@pytest.fixture
def cube_file(tmp_path):
    rng = np.random.default_rng(3)
    cube = rng.normal(size=(4, 1024, 2048)).astype(np.float32)  # 32 MiB
    path = tmp_path / "cube.npy"
    np.save(path, cube)
    return path, cube


@linux
def test_release_drops_resident_pages_and_keeps_values(cube_file):
    path, truth = cube_file
    mapped = np.load(path, mmap_mode="r")
    assert mapped_buffer(mapped[1]) is not None
    before = _rss_file_mib()
    total = float(np.sum(mapped, dtype=np.float64))  # touch every page
    touched = _rss_file_mib() - before
    assert touched > 24  # the 32 MiB are resident now
    assert all(release_pages(plane) for plane in mapped)
    assert _rss_file_mib() - before < touched / 4
    # read back from the page cache / the file, bit for bit
    assert np.array_equal(mapped, truth)
    assert float(np.sum(mapped, dtype=np.float64)) == total


def test_only_read_only_mappings_are_released(cube_file):
    path, truth = cube_file
    assert not release_pages(np.array(truth[0]))  # anonymous memory
    assert not release_pages(np.zeros(0, np.float32))
    assert not release_pages([1.0, 2.0])
    writable = np.load(path, mmap_mode="c")  # private copy-on-write mapping
    writable[0, 0, 0] = 123.0
    assert not release_pages(writable[0])
    assert writable[0, 0, 0] == 123.0  # a written page is never discarded


def test_asdf_lazy_array_of_a_reference_is_released(tmp_path, cube_file):
    # reference models hand out asdf's lazy NDArrayType, not an ndarray
    import asdf

    _, truth = cube_file
    path = tmp_path / "ref.asdf"
    asdf.AsdfFile({"cube": truth}).write_to(path)
    with asdf.open(path, memmap=True, lazy_load=True) as af:
        lazy = af.tree["cube"]
        assert not isinstance(lazy, np.ndarray)
        assert release_pages(lazy)
        assert np.array_equal(lazy, truth)


def test_strided_view_is_released_without_touching_neighbours(cube_file):
    path, truth = cube_file
    mapped = np.load(path, mmap_mode="r")
    view = mapped[2, ::3, 5:-7]
    assert release_pages(view)
    assert np.array_equal(mapped, truth)


def test_subtract_bias_reports_each_plane_once():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 12, 12)).astype(np.float32)
    bias = rng.normal(size=(5, 8, 8)).astype(np.float32)
    expected = data.copy()
    expected[:, 2:-2, 2:-2] -= bias[2:]
    seen = []
    biascorr.subtract_bias(data, bias, 2, done=seen.append)
    assert np.array_equal(data, expected)
    assert len(seen) == 3
    for k, plane in zip(range(2, 5), seen, strict=True):
        assert np.shares_memory(plane, bias[k])
