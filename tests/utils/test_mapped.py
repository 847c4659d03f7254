"""`utils.mapped`: mapped pages leave the process, values stay; rows read from the file."""

import re
import sys

import numpy as np
import pytest

from romanimpreprocess.biascorr import biascorr
from romanimpreprocess.utils.mapped import (
    RowBuffers,
    copy_mapped,
    mapped_buffer,
    release_pages,
)

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


def _mapped_file(path, dtype=np.float32, shape=None):
    """An array over an ``mmap`` of the whole file, as asdf's ``memmap=True`` maps."""
    import mmap

    with open(path, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    size = view.size() // np.dtype(dtype).itemsize
    array = np.ndarray(shape=(size,), dtype=dtype, buffer=view)
    return array if shape is None else array.reshape(shape)


@linux
def test_copy_mapped_reads_the_rows_from_the_file(tmp_path):
    rng = np.random.default_rng(4)
    cube = rng.normal(size=(3, 3, 512, 1024)).astype(np.float32)  # 18 MiB
    path = tmp_path / "kernel.bin"
    cube.tofile(path)
    mapped = _mapped_file(path, shape=cube.shape)
    out = np.empty((3, 3, 300, 1024), np.float32)
    before = _rss_file_mib()
    copy_mapped(mapped[:, :, 100:400], out)
    assert np.array_equal(out, cube[:, :, 100:400])
    # read from the file: the 10 MiB of rows were never mapped into the process
    assert _rss_file_mib() - before < 2
    np.copyto(out, mapped[:, :, 100:400])
    assert _rss_file_mib() - before > 8  # (the mapping itself does map them)


def test_copy_mapped_copies_any_other_array(tmp_path):
    rng = np.random.default_rng(5)
    cube = rng.normal(size=(2, 64, 80)).astype(np.float32)
    cube.tofile(tmp_path / "c.bin")
    mapped = _mapped_file(tmp_path / "c.bin", shape=cube.shape)
    for source in (cube[:, 3:40], mapped[:, 5:9, ::2], mapped[:, :, 1:7], cube[0]):
        out = np.empty(source.shape, source.dtype)
        copy_mapped(source, out)
        assert np.array_equal(out, source)
    with pytest.raises(ValueError, match="copy_mapped"):
        copy_mapped(cube[:, :3], np.empty((2, 4, 80), np.float32))


@linux
def test_copy_mapped_never_reads_a_file_renamed_over_the_path(tmp_path):
    first = np.arange(4 * 32 * 64, dtype=np.float32).reshape(4, 32, 64)
    path = tmp_path / "ref.bin"
    first.tofile(path)
    mapped = _mapped_file(path, shape=first.shape)
    (first + 1000).tofile(tmp_path / "new.bin")
    (tmp_path / "new.bin").replace(path)  # a new file under the mapped file's name
    out = np.empty((4, 10, 64), np.float32)
    copy_mapped(mapped[:, 2:12], out)
    assert np.array_equal(out, first[:, 2:12])  # the mapped file's values


@linux
def test_copy_mapped_reads_an_asdf_reference_array_from_its_file(tmp_path):
    import asdf

    rng = np.random.default_rng(6)
    cube = rng.normal(size=(3, 3, 400, 1024)).astype(np.float32)  # 14 MiB
    asdf.AsdfFile({"data": cube}).write_to(tmp_path / "ref.asdf")
    with asdf.open(tmp_path / "ref.asdf", lazy_load=True, memmap=True) as af:
        mapped = np.asarray(af["data"])
        out = np.empty((3, 3, 200, 1024), np.float32)
        before = _rss_file_mib()
        copy_mapped(mapped[:, :, 150:350], out)
        assert _rss_file_mib() - before < 2
        assert np.array_equal(out, cube[:, :, 150:350])


def test_row_buffers_keep_one_buffer_per_name(tmp_path):
    rng = np.random.default_rng(7)
    cube = rng.normal(size=(2, 100, 64)).astype(np.float32)
    cube.tofile(tmp_path / "c.bin")
    mapped = _mapped_file(tmp_path / "c.bin", shape=cube.shape)
    rows = RowBuffers()
    first = rows.read("c", mapped[:, 0:40])
    assert np.array_equal(first, cube[:, 0:40])
    last = rows.read("c", mapped[:, 80:100])  # a smaller last band: same buffer
    assert np.array_equal(last, cube[:, 80:100])
    assert np.shares_memory(first, last)
    other = rows.read("d", mapped[1, 5:9])
    assert np.array_equal(other, cube[1, 5:9])
    assert not np.shares_memory(other, last)
    rows.clear()
    again = rows.read("c", mapped[:, 10:50])
    assert not np.shares_memory(again, last)  # cleared: a new buffer
