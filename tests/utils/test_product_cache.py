"""Reference products on disk, shared by the runs on one calibration set."""

import functools
import logging
import os

import asdf
import numpy as np
import pytest

from romanimpreprocess import _startup
from romanimpreprocess.dark_current import dark_current
from romanimpreprocess.datamodels import reference
from romanimpreprocess.flatfield import flatfield
from romanimpreprocess.stpipe import between_exposures
from romanimpreprocess.utils import product_cache
from tests.bands_check import read_l2, run_simulated

ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "data_withsky")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of this test's own; not a batch worker (nothing kept in memory)."""
    directory = tmp_path / "products"
    monkeypatch.setenv(product_cache.CACHE_ENV, str(directory))
    monkeypatch.delenv(product_cache.CACHE_SIZE_ENV, raising=False)
    monkeypatch.setattr(_startup, "_batch_worker", False)
    between_exposures.forget_kept()
    return directory


def _products(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.random((6, 5), dtype=np.float32),
        rng.random((6, 5)) > 0.5,
        rng.random((10, 9))[2:-2, 1:-1:2],  # a view, as the science area is
        np.float32(1.75),
        np.float64(2.5),
        True,
        None,
    )


def _entries(directory):
    return sorted(p for p in os.listdir(directory) if not p.startswith("."))


def test_products_come_back_with_their_values_and_types(cache):
    stored = _products()
    product_cache.store(("dark_current", False, ("a", 1)), stored)
    loaded = product_cache.load(("dark_current", False, ("a", 1)))
    assert len(loaded) == len(stored)
    assert not stored[2].flags.c_contiguous
    for got, want in zip(loaded[:3], stored[:3], strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable  # mapped read-only: no run changes them
    # the median gain reaches the L2 as it was computed: its numpy type is kept
    assert type(loaded[3]) is np.float32 and loaded[3] == stored[3]
    assert type(loaded[4]) is np.float64 and loaded[4] == stored[4]
    assert loaded[5] is True and loaded[6] is None
    assert _entries(cache) == [_entries(cache)[0]]
    assert _entries(cache)[0].startswith("dark-current-")


def _layouts():
    a = np.random.default_rng(3).random((50, 40)).astype(np.float32)
    return [
        a[3:-3, 2:-2],  # the science area of a frame
        a[::2],
        a.T,  # Fortran order
        (a > 0.5)[1:, 1:],
        np.arange(24.0).reshape(2, 3, 4)[:, 1:, ::2],
        np.zeros((0, 5))[:, 1:],
        a[5],
        np.float32(2.5),
    ]


@pytest.mark.parametrize("index", range(len(_layouts())))
def test_arrays_of_any_layout_are_stored_whole(cache, index, monkeypatch):
    value = _layouts()[index]
    # blocks of a few rows: the rows of a view are written in several pieces
    monkeypatch.setattr(
        product_cache, "_save", functools.partial(product_cache._save, block_bytes=64)
    )
    product_cache.store(("k", index), (value,))
    (got,) = product_cache.load(("k", index))
    assert np.asarray(got).dtype == np.asarray(value).dtype
    assert np.shape(got) == np.shape(value)
    np.testing.assert_array_equal(got, value)


def test_another_key_or_another_code_is_a_miss(cache, monkeypatch):
    product_cache.store(("flatfield", False, ("a", 1)), _products())
    assert product_cache.load(("flatfield", False, ("a", 2))) is None
    assert product_cache.load(("flatfield", True, ("a", 1))) is None
    monkeypatch.setattr(product_cache, "_code_digest", lambda: "edited")
    assert product_cache.load(("flatfield", False, ("a", 1))) is None


def test_code_digest_follows_the_package_source_and_numba(tmp_path, monkeypatch):
    import importlib.util
    import types

    digest = product_cache._code_digest()
    assert digest == product_cache._code_digest()
    assert len(digest) == 40 and int(digest, 16) >= 0
    # another numba installation (an upgrade rewrites its __init__.py): another digest
    other = tmp_path / "__init__.py"
    other.write_text("")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: types.SimpleNamespace(origin=str(other)),
    )
    product_cache._code_digest.cache_clear()
    try:
        assert product_cache._code_digest() != digest
    finally:
        monkeypatch.undo()
        product_cache._code_digest.cache_clear()
    assert product_cache._code_digest() == digest


@pytest.mark.parametrize("value", ["0", "off", "No", "false"])
def test_off_stores_and_loads_nothing(cache, monkeypatch, value):
    monkeypatch.setenv(product_cache.CACHE_ENV, value)
    assert product_cache.cache_directory() is None
    product_cache.store(("k",), _products())
    assert product_cache.load(("k",)) is None
    assert not cache.exists()


def test_default_directory_is_the_users_in_the_temporary_directory(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(product_cache.CACHE_ENV)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    directory = product_cache.cache_directory()
    assert directory == str(tmp_path / f"romanimpreprocess-{os.getuid()}" / "products")
    assert os.stat(directory).st_mode & 0o777 == 0o700


def test_a_default_directory_that_is_a_link_turns_the_cache_off(
    tmp_path, monkeypatch, caplog
):
    import tempfile

    # another user's link where ours would be made, in a directory all can write to
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"romanimpreprocess-{os.getuid()}").symlink_to(elsewhere)
    monkeypatch.delenv(product_cache.CACHE_ENV)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    product_cache._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert product_cache.cache_directory() is None
        product_cache.store(("k",), _products())
    assert "Product cache off" in caplog.text and "not a directory of" in caplog.text
    assert not list(elsewhere.rglob("*.npy"))


def test_a_directory_given_is_used_as_it_is(tmp_path, monkeypatch):
    shared = tmp_path / "team"
    shared.mkdir()
    link = tmp_path / "link"
    link.symlink_to(shared)
    monkeypatch.setenv(product_cache.CACHE_ENV, str(link))
    assert product_cache.cache_directory() == str(link)
    product_cache.store(("k",), _products())
    assert product_cache.load(("k",)) is not None
    assert _entries(shared)


@pytest.mark.parametrize("damage", ["array", "key", "layout", "missing"])
def test_a_damaged_entry_is_removed_and_computed_again(cache, caplog, damage):
    key = ("dark_current", False, ("a", 1))
    product_cache.store(key, _products())
    (entry,) = _entries(cache)
    path = cache / entry
    if damage == "array":
        (path / "0.npy").write_bytes(b"\x93NUMPY garbage")
    elif damage == "key":
        (path / "key.json").write_text("[1, 2]")
    elif damage == "layout":
        (path / "layout.json").write_text("{not json")
    else:
        (path / "1.npy").unlink()
    made = []

    def compute():
        made.append(1)
        return _products(1)

    with caplog.at_level(logging.WARNING):
        products = between_exposures.reuse_between_exposures(key, compute, "Dark")
    assert made == [1]
    np.testing.assert_array_equal(products[0], _products(1)[0])
    assert "unusable" in caplog.text and entry in caplog.text
    # stored again, whole: the next run maps it
    again = product_cache.load(key)
    np.testing.assert_array_equal(again[0], _products(1)[0])


def test_products_of_another_type_are_not_stored(cache):
    product_cache.store(("k",), (np.zeros(3), {"a": 1}))
    product_cache.store(("j",), (np.array([object()]),))
    assert product_cache.load(("k",)) is None and product_cache.load(("j",)) is None
    assert not _entries(cache)


def test_an_entry_stored_meanwhile_by_another_run_is_kept(cache):
    key = ("flatfield", False)
    product_cache.store(key, _products(0))
    product_cache.store(key, _products(1))  # a second run that computed as well
    assert len(_entries(cache)) == 1
    assert not [p for p in os.listdir(cache) if p.startswith(".tmp-")]
    np.testing.assert_array_equal(product_cache.load(key)[0], _products(0)[0])


def test_least_recently_used_entries_go_beyond_the_cap(cache, monkeypatch):
    size = 3000 * 1000 * 4  # one product: 12 MB
    monkeypatch.setenv(product_cache.CACHE_SIZE_ENV, str(2.5 * size / 1e9))

    def products(i):
        return (np.full((3000, 1000), i, np.float32),)

    product_cache.store(("a",), products(0))
    product_cache.store(("b",), products(1))
    past = os.path.getmtime(cache / _entries(cache)[0]) - 100
    for entry in _entries(cache):
        os.utime(cache / entry, (past, past))
    assert product_cache.load(("a",)) is not None  # "a" used last
    product_cache.store(("c",), products(2))
    assert product_cache.load(("b",)) is None
    assert product_cache.load(("a",))[0][0, 0] == 0
    assert product_cache.load(("c",))[0][0, 0] == 2


def test_an_eviction_that_fails_does_not_stop_the_run(cache, monkeypatch, caplog):
    def gone(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(product_cache.os, "scandir", gone)
    product_cache._warned.clear()
    with caplog.at_level(logging.WARNING):
        product_cache.store(("k",), _products())
    assert "entries not evicted" in caplog.text
    assert product_cache.load(("k",)) is not None


def test_a_cap_that_is_not_a_number_is_the_default(cache, monkeypatch, caplog):
    monkeypatch.setenv(product_cache.CACHE_SIZE_ENV, "lots")
    product_cache._warned.clear()
    with caplog.at_level(logging.WARNING):
        product_cache.store(("k",), _products())
    assert product_cache.CACHE_SIZE_ENV in caplog.text and "'lots'" in caplog.text
    assert product_cache.load(("k",)) is not None


def test_an_unwritable_cache_warns_and_the_run_goes_on(cache, monkeypatch, caplog):
    cache.mkdir()
    monkeypatch.setattr(os, "mkdir", _refuse)
    product_cache._warned.clear()
    made = []

    def compute():
        made.append(1)
        return _products()

    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            between_exposures.reuse_between_exposures(("k",), compute, "Flat")
    assert made == [1, 1]
    assert caplog.text.count("not stored in the product cache") == 1


def _as_in_a_new_process():
    """Forget what this process computed from reference files (the test session's
    earlier runs used the same simulated set)."""
    reference._SCIENCE_MEDIANS.clear()
    reference._NONFINITE_COUNTED.clear()


def _photometry(path):
    with asdf.open(path) as af:
        return dict(af["roman"]["meta"]["photometry"])


def _refuse(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_runs_on_one_calibration_set_compute_its_products_once(
    simulated_set, tmp_path, cache, monkeypatch, caplog
):
    dark_calls, flat_calls = [], []
    for module, name, calls in (
        (dark_current, "deconvolved_dark_slope", dark_calls),
        (flatfield, "prepare_flat", flat_calls),
    ):
        original = getattr(module, name)

        def counted(*args, _original=original, _calls=calls, **kwargs):
            _calls.append(1)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    _as_in_a_new_process()
    scans = []
    count = reference._count_nonfinite
    monkeypatch.setattr(
        reference, "_count_nonfinite", lambda a: scans.append(1) or count(a)
    )
    first = tmp_path / "first_cal.asdf"
    run_simulated(simulated_set, first)
    assert (len(dark_calls), len(flat_calls)) == (1, 1)
    # the dark slope, the flat and photom's median gain; each array found finite
    entries = _entries(cache)
    products = [e for e in entries if not e.startswith("finite-")]
    assert len(products) == 3
    assert len(entries) - len(products) == len(scans) > 0
    _as_in_a_new_process()
    scans.clear()
    second = tmp_path / "second_cal.asdf"
    with caplog.at_level(logging.INFO, logger="romanimpreprocess"):
        run_simulated(simulated_set, second)
    assert (len(dark_calls), len(flat_calls)) == (1, 1)
    assert caplog.text.count("from the product cache") == 3
    assert not reference._SCIENCE_MEDIANS  # no median taken again
    assert not scans  # no reference array scanned again
    assert len(reference._NONFINITE_COUNTED) == len(entries) - len(products)
    a, b = read_l2(first, ARRAYS), read_l2(second, ARRAYS)
    for name in ARRAYS:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    assert _photometry(first)["conversion_megajanskys"] is not None
    assert _photometry(second) == _photometry(first)
    # without the cache: the same L2 again, each product computed
    monkeypatch.setenv(product_cache.CACHE_ENV, "off")
    third = tmp_path / "third_cal.asdf"
    run_simulated(simulated_set, third)
    assert (len(dark_calls), len(flat_calls)) == (2, 2)
    c = read_l2(third, ARRAYS)
    for name in ARRAYS:
        np.testing.assert_array_equal(c[name], a[name], err_msg=name)
