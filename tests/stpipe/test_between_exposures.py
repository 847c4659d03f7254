"""Reference products kept between the exposures of a rip-batch worker, nowhere else.

The on-disk product cache is off here (``RIP_PRODUCT_CACHE=0``): these tests are of
the worker's memory alone; tests/utils/test_product_cache.py tests the disk.
"""

import os
import shutil

import numpy as np
import pytest

from romanimpreprocess import _startup
from romanimpreprocess.dark_current import DarkCurrentStep, dark_current
from romanimpreprocess.datamodels.reference import open_reference
from romanimpreprocess.flatfield import FlatFieldStep, flatfield
from romanimpreprocess.stpipe import between_exposures
from tests.conftest import cross_kernel, make_rate_image

N = 40
S = N - 8


@pytest.fixture(autouse=True)
def no_product_cache(monkeypatch):
    monkeypatch.setenv("RIP_PRODUCT_CACHE", "0")


@pytest.fixture
def worker(monkeypatch):
    """This process as a rip-batch worker (`start_worker`), nothing kept before."""
    monkeypatch.setattr(_startup, "_batch_worker", True)
    between_exposures.forget_kept()
    yield
    between_exposures.forget_kept()


def _counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_products_are_computed_once_per_key_in_a_worker(worker):
    made = []

    def compute():
        made.append(1)
        return np.arange(4.0), np.zeros(3, bool), 1.5

    first = between_exposures.reuse_between_exposures(("a", 1), compute)
    again = between_exposures.reuse_between_exposures(("a", 1), compute)
    assert again is first and len(made) == 1
    assert not first[0].flags.writeable  # no exposure changes the next one's
    with pytest.raises(ValueError):
        first[0][0] = 9.0
    others = [("other", k) for k in range(between_exposures.KEPT_PRODUCTS)]
    for key in others[:-1]:
        between_exposures.reuse_between_exposures(key, compute)
    # KEPT_PRODUCTS kept: "a" is still there
    assert between_exposures.reuse_between_exposures(("a", 1), compute) is first
    assert len(made) == between_exposures.KEPT_PRODUCTS
    # one more: the least recently used goes first (others[0], not "a")
    between_exposures.reuse_between_exposures(others[-1], compute)
    between_exposures.reuse_between_exposures(("a", 1), compute)
    assert len(made) == between_exposures.KEPT_PRODUCTS + 1
    between_exposures.reuse_between_exposures(others[0], compute)
    assert len(made) == between_exposures.KEPT_PRODUCTS + 2


def test_outside_a_worker_without_the_disk_cache_every_call_computes(monkeypatch):
    monkeypatch.setattr(_startup, "_batch_worker", False)
    made = []

    def compute():
        made.append(1)
        return (np.zeros(2),)

    for _ in range(2):
        products = between_exposures.reuse_between_exposures(("a",), compute)
    assert len(made) == 2 and products[0].flags.writeable


def _version(path):
    reference = open_reference("gain", path)
    try:
        return between_exposures.reference_identity(reference)
    finally:
        reference.close()


def test_a_file_rewritten_or_replaced_is_another_version(make_ref_file, tmp_path):
    path = make_ref_file("gain.asdf", {"data": np.full((N, N), 1.8)})
    before = _version(path)
    assert _version(path) == before  # the same file, opened again
    os.utime(path, ns=(1, 1))
    touched = _version(path)
    assert touched != before
    # replaced by a file of the same size and modification time: another inode
    copy = tmp_path / "copy.asdf"
    shutil.copyfile(path, copy)
    os.utime(copy, ns=(1, 1))
    os.replace(copy, path)
    assert _version(path) != touched
    assert between_exposures.reference_identity(None) is None


def _dark_files(make_ref_file, rng, level=0.25):
    dark_slope = rng.uniform(level, level + 0.1, (N, N)).astype(np.float32)
    return {
        "override_dark": make_ref_file(
            "dark.asdf",
            {"data": np.zeros((4, N, N), np.float32), "dark_slope": dark_slope},
        ),
        "override_gain": make_ref_file(
            "gain.asdf", {"data": rng.uniform(1.6, 2.0, (N, N))}
        ),
        "override_ipc4d": make_ref_file(
            "ipc.asdf", {"data": cross_kernel(S).astype(np.float32)}
        ),
    }


def _rate():
    return make_rate_image(S, np.full((S, S), 3.0, np.float32))


def test_dark_step_reuses_its_slope_in_a_worker_with_the_same_bits(
    worker, make_ref_file, rng, monkeypatch
):
    files = _dark_files(make_ref_file, rng)
    calls = _counting(monkeypatch, dark_current, "deconvolved_dark_slope")
    first = DarkCurrentStep.call(_rate(), **files)
    second = DarkCurrentStep.call(_rate(), **files)
    assert len(calls) == 1
    np.testing.assert_array_equal(second.data, first.data)
    np.testing.assert_array_equal(second.dq, first.dq)
    assert second["processinfo"]["medgain"] == first["processinfo"]["medgain"]
    # the same as computed afresh outside a worker
    monkeypatch.setattr(_startup, "_batch_worker", False)
    fresh = DarkCurrentStep.call(_rate(), **files)
    np.testing.assert_array_equal(fresh.data, first.data)
    # a dark rewritten since is read again
    monkeypatch.setattr(_startup, "_batch_worker", True)
    changed = _dark_files(make_ref_file, np.random.default_rng(5), level=1.0)
    files["override_dark"] = changed["override_dark"]
    third = DarkCurrentStep.call(_rate(), **files)
    assert len(calls) == 3
    assert np.all(third.data < first.data)


def test_flat_step_reuses_its_flat_in_a_worker_and_leaves_it_unchanged(
    worker, make_ref_file, rng, monkeypatch
):
    flat = rng.uniform(0.8, 1.2, (N, N)).astype(np.float32)
    files = {
        "override_flat": make_ref_file("flat.asdf", {"data": flat}),
        "override_gain": make_ref_file("gain.asdf", {"data": np.full((N, N), 1.8)}),
        "override_ipc4d": make_ref_file(
            "ipc.asdf", {"data": cross_kernel(S).astype(np.float32)}
        ),
    }
    calls = _counting(monkeypatch, flatfield, "prepare_flat")
    runs = [FlatFieldStep.call(_rate(), **files) for _ in range(3)]
    assert len(calls) == 1
    for out in runs[1:]:  # the kept flat was not squared in place by the first run
        for key in ("data", "err", "var_poisson", "var_rnoise", "dq"):
            np.testing.assert_array_equal(out[key], runs[0][key])
    monkeypatch.setattr(_startup, "_batch_worker", False)
    fresh = FlatFieldStep.call(_rate(), **files)
    np.testing.assert_array_equal(fresh.data, runs[0].data)
    np.testing.assert_array_equal(fresh.var_rnoise, runs[0].var_rnoise)
