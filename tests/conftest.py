"""Shared fixtures: small frames with the real WFI geometry (border 4, 32 channels)."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import asdf
import numpy as np
import pytest
from roman_datamodels import datamodels as dm

from romanimpreprocess.constants import AMP33_WIDTH

# The session's own product cache (romanimpreprocess.utils.product_cache), empty at
# its start and removed at its end: never the user's, and inherited by the runs
# the tests start in subprocesses.
_PRODUCT_CACHE = tempfile.mkdtemp(prefix="rip-test-products-")
os.environ["RIP_PRODUCT_CACHE"] = _PRODUCT_CACHE
atexit.register(shutil.rmtree, _PRODUCT_CACHE, True)


def run_python(script, *args, env=None, cwd=None):
    """Run ``python -c script *args`` in a fresh process; its stdout (exit 0 asserted)."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


SMALL_SIZE = 64
SMALL_READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7], [8]]


@pytest.fixture
def rng(request):
    """A generator seeded per test, so results never depend on test order."""
    # crc32, not hash(): str hashes change between processes (PYTHONHASHSEED)
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def make_raw_model(size=SMALL_SIZE, read_pattern=None, frame_time=3.04, seed=0):
    """A small ScienceRawModel with plausible meta (values random, not physical)."""
    read_pattern = read_pattern or SMALL_READ_PATTERN
    nres = len(read_pattern)
    rng = np.random.default_rng(seed)
    raw = dm.ScienceRawModel.create_fake_data(shape=(nres, size, size))
    raw.data = rng.integers(1000, 2000, (nres, size, size)).astype(np.uint16)
    raw.amp33 = rng.integers(1000, 2000, (nres, size, AMP33_WIDTH)).astype(np.uint16)
    raw.meta.exposure.nresultants = nres
    raw.meta.exposure.read_pattern = [list(r) for r in read_pattern]
    raw.meta.exposure.frame_time = frame_time
    raw.meta.instrument.detector = "WFI01"
    for key in ("xstart", "xstop", "ystart", "ystop"):
        raw.meta.guide_star[f"window_{key}"] = -1
    return raw


@pytest.fixture
def make_l1_file(tmp_path):
    """Factory writing a small L1 file; returns its path."""

    def _make(name="small_uncal.asdf", **kwargs):
        path = tmp_path / name
        make_raw_model(**kwargs).save(path)
        return str(path)

    return _make


def make_rate_image(size, data):
    """A rate `ImageModel` of ``size``² pixels as the later steps receive it.

    ``data`` the rates (float32); dq 0, err 0.5, var_poisson 0.16, var_rnoise 0.09;
    a 4-resultant read pattern; no WCS.
    """
    model = dm.ImageModel.create_fake_data(shape=(size, size))
    model.data = data
    model.dq = np.zeros((size, size), np.uint32)
    model.err = np.full((size, size), 0.5, np.float32)
    model.var_poisson = np.full((size, size), 0.16, np.float32)
    model.var_rnoise = np.full((size, size), 0.09, np.float32)
    model.meta.exposure.read_pattern = [[0], [1, 2], [3, 4], [5, 6]]
    model.meta.wcs = None
    return model


@pytest.fixture
def make_ref_file(tmp_path):
    """Factory writing a legacy-layout reference file ``{roman: tree}``."""

    def _make(name, tree):
        path = tmp_path / name
        asdf.AsdfFile({"roman": tree}).write_to(path)
        return str(path)

    return _make


@pytest.fixture(scope="session")
def simulated_set(tmp_path_factory):
    """A 128x128 survey6 simulation (seed 1): SimulationPaths of its files."""
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    return write_simulation(
        tmp_path_factory.mktemp("simulated_set"), SimulationConfig(size=128, seed=1)
    )


@pytest.fixture(scope="session")
def band_inputs(simulated_set):
    """(pipeline, {ramp step: the ramp it receives}) of the simulated exposure."""
    from tests.bands_check import ramp_inputs

    return ramp_inputs(simulated_set)


def cross_kernel(size, eps=0.02):
    """A (3, 3, size, size) IPC kernel: ``eps`` to the 4 neighbours, the rest kept."""
    kernel = np.zeros((3, 3, size, size), np.float32)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        kernel[1 + dy, 1 + dx] = eps
    kernel[1, 1] = 1 - 4 * eps
    return kernel
