"""The numba linearity kernel gives exactly the bits of the numpy row blocks."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.linearity import linearity as lin


def random_calibration(rng, nterms, ny=64, nx=96, nres=6):
    """Random Legendre calibrations and ramps with every special case.

    Ramps leave the fitted range on both sides (continuation, NO_LIN_CORR),
    SATURATED resultants, NO_LIN_CORR / REFERENCE_PIXEL file flags, unusable
    calibrations (NaN coefficient, Smax = Smin, Smax < Smin, infinite and NaN
    Sref) and NaN data.
    """
    smin = rng.uniform(9000, 9500, (ny, nx)).astype(np.float32)
    smax = smin + rng.uniform(30000, 40000, (ny, nx)).astype(np.float32)
    sref = smin + np.float32(400)
    planes = [rng.normal(0, 10, (ny, nx)), (smax - smin) / 2]
    planes += [rng.normal(0, 50, (ny, nx)) for _ in range(nterms - 2)]
    coeffs = np.stack(planes[:nterms]).astype(np.float32)
    data = (sref + rng.uniform(-4000, 45000, (nres, ny, nx))).astype(np.float32)
    data[rng.random(data.shape) < 0.002] = np.nan
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[rng.random(data.shape) < 0.1] = group.SATURATED
    groupdq[rng.random(data.shape) < 0.05] |= group.DO_NOT_USE
    lin_dq = np.zeros((ny, nx), np.uint32)
    lin_dq[rng.random((ny, nx)) < 0.03] = pixel.NO_LIN_CORR
    lin_dq[rng.random((ny, nx)) < 0.03] |= pixel.REFERENCE_PIXEL
    lin_dq[rng.random((ny, nx)) < 0.03] |= pixel.DEAD
    coeffs[-1, 3, 4] = np.nan
    smax[5, 5] = smin[5, 5]
    smax[5, 6] = smin[5, 6] - 10
    sref[6, 6] = np.inf
    sref[6, 7] = np.nan
    return data, groupdq, coeffs, smin, smax, sref, lin_dq


def run(engine, data, groupdq, coeffs, smin, smax, sref, lin_dq, **kwargs):
    """(linearised copy of ``data``, pixel flags) with ``engine``."""
    out = data.copy()
    groupdq_before = groupdq.copy()
    with np.errstate(all="ignore"):
        flags = lin.apply_linearity(
            out, groupdq, coeffs, smin, smax, sref, lin_dq, engine=engine, **kwargs
        )
    assert np.array_equal(groupdq, groupdq_before)  # groupdq is not modified
    return out, flags


def assert_identical(reference, result):
    """Same dtype, same NaN positions, same bits everywhere else."""
    (data_ref, flags_ref), (data_res, flags_res) = reference, result
    assert data_ref.dtype == data_res.dtype
    assert np.array_equal(np.isnan(data_ref), np.isnan(data_res))
    finite = ~np.isnan(data_ref)
    bits = data_ref.dtype.str.replace("f", "u")
    assert np.array_equal(data_ref.view(bits)[finite], data_res.view(bits)[finite])
    assert flags_ref.dtype == flags_res.dtype
    assert np.array_equal(flags_ref, flags_res)


@pytest.mark.parametrize("nterms", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("dtype", [None, np.float64])
@pytest.mark.parametrize("legacy_compat", [False, True])
@pytest.mark.parametrize("do_not_flag_first", [False, True])
def test_numba_equals_numpy(rng, nterms, dtype, legacy_compat, do_not_flag_first):
    arrays = random_calibration(rng, nterms)
    kwargs = {
        "dtype": dtype,
        "legacy_compat": legacy_compat,
        "do_not_flag_first": do_not_flag_first,
    }
    reference = run("numpy", *arrays, **kwargs)
    result = run("numba", *arrays, **kwargs)
    assert_identical(reference, result)
    flags = result[1]
    # the random ramps exercise the continuation and the unusable calibrations
    assert (flags & pixel.NO_LIN_CORR).any()
    assert (flags & pixel.DO_NOT_USE).any()


def test_numba_equals_numpy_float64_files(rng):
    data, groupdq, coeffs, smin, smax, sref, lin_dq = random_calibration(
        rng, 4, ny=128, nx=128
    )
    arrays = (data, groupdq, coeffs.astype(np.float64), smin.astype(np.float64),
              smax.astype(np.float64), sref.astype(np.float64), lin_dq)  # fmt: skip
    for dtype in (None, np.float64):
        kwargs = {"dtype": dtype, "do_not_flag_first": True}
        assert_identical(
            run("numpy", *arrays, **kwargs), run("numba", *arrays, **kwargs)
        )


def test_mixed_dtypes_fall_back_to_numpy(rng):
    # float32 arithmetic with float64 coefficients promotes Phi to float64 in
    # numpy: the kernel does not apply and the result must still be numpy's.
    data, groupdq, coeffs, smin, smax, sref, lin_dq = random_calibration(rng, 3)
    arrays = (data, groupdq, coeffs.astype(np.float64), smin, smax, sref, lin_dq)
    assert lin._kernel_dtype(*arrays[:6], None) is None
    kwargs = {"dtype": None, "do_not_flag_first": False}
    assert_identical(run("numpy", *arrays, **kwargs), run("numba", *arrays, **kwargs))


def test_invalid_calibration_kernel_equals_numpy(rng):
    _, _, coeffs, smin, smax, sref, _ = random_calibration(rng, 4)
    coeffs[0, 10, 10] = np.inf
    smin[11, 11] = -np.inf
    numpy_mask = lin.invalid_calibration(coeffs, smin, smax, sref, engine="numpy")
    numba_mask = lin.invalid_calibration(coeffs, smin, smax, sref, engine="numba")
    assert numba_mask.dtype == bool
    assert np.array_equal(numpy_mask, numba_mask)
    assert numpy_mask.sum() >= 6


def test_threads_give_identical_bits(rng):
    arrays = random_calibration(rng, 4, ny=128, nx=128)
    kwargs = {"dtype": np.float64, "do_not_flag_first": True}
    one = run("numba", *arrays, threads=1, **kwargs)
    two = run("numba", *arrays, threads=2, **kwargs)
    assert_identical(one, two)


def test_unknown_engine_rejected(rng):
    arrays = random_calibration(rng, 2, ny=8, nx=8)
    with pytest.raises(ValueError, match="engine"):
        run("cuda", *arrays, do_not_flag_first=False)
