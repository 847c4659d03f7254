"""DirectFile writes a file's bytes around the page cache, or through it where refused."""

import errno
import io
import os

import numpy as np
import pytest

from romanimpreprocess.utils import direct_write

pytestmark = pytest.mark.skipif(
    not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform"
)


def _pieces(seed=0):
    """Writes of awkward sizes: across, inside and exactly at buffer boundaries."""
    rng = np.random.default_rng(seed)
    sizes = [1, 4095, 4096, 4097, 20000, 3, 65536, 12345, 0, 70001]
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]


def _write(path, pieces, buffer_bytes=16384):
    with direct_write.DirectFile(path, buffer_bytes=buffer_bytes) as out:
        for piece in pieces:
            assert out.write(piece) == len(piece)
        assert out.tell() == sum(map(len, pieces))
        return out


def test_bytes_are_those_written(tmp_path):
    pieces = _pieces()
    path = tmp_path / "f.bin"
    out = _write(path, pieces)
    assert path.read_bytes() == b"".join(pieces)
    assert out.closed
    # an existing file is replaced, not partly overwritten
    _write(path, pieces[:2])
    assert path.read_bytes() == b"".join(pieces[:2])


def test_seek_forward_leaves_zeros_and_back_is_refused(tmp_path):
    path = tmp_path / "f.bin"
    with direct_write.DirectFile(path, buffer_bytes=8192) as out:
        out.write(b"abc")
        assert out.seek(10000, io.SEEK_CUR) == 10003
        out.write(b"z")
        assert out.seek(0, io.SEEK_END) == 10004
        with pytest.raises(io.UnsupportedOperation, match="cannot seek back"):
            out.seek(5)
    assert path.read_bytes() == b"abc" + bytes(10000) + b"z"


def test_refused_at_open_writes_through_the_page_cache(tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct_write.os, "open", no_direct)
    pieces = _pieces(1)
    out = _write(tmp_path / "f.bin", pieces)
    assert not out.direct
    assert (tmp_path / "f.bin").read_bytes() == b"".join(pieces)


def test_refused_at_first_write_goes_on_through_the_page_cache(tmp_path, monkeypatch):
    import fcntl

    real_pwrite = os.pwrite
    refused = []

    def refuse_direct(fd, data, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(direct_write.os, "pwrite", refuse_direct)
    pieces = _pieces(2)
    out = _write(tmp_path / "f.bin", pieces)
    assert refused == [0] and not out.direct
    assert (tmp_path / "f.bin").read_bytes() == b"".join(pieces)


def test_other_write_errors_are_raised(tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_write.os, "pwrite", full)
    with pytest.raises(OSError, match="No space left"):
        _write(tmp_path / "f.bin", _pieces(3))


def test_turned_off_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("RIP_DIRECT_WRITE", raising=False)
    opened = direct_write.open_direct(tmp_path / "a.bin")
    assert isinstance(opened, direct_write.DirectFile)
    opened.close()
    monkeypatch.setenv("RIP_DIRECT_WRITE", "0")
    assert direct_write.open_direct(tmp_path / "b.bin") is None
