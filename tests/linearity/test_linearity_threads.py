"""Threaded row blocks give the same bits as the serial evaluation."""

import numpy as np

from romanimpreprocess.linearity.linearity import apply_linearity


def test_threads_do_not_change_any_value(rng):
    n, ny, nx = 5, 40, 32
    smin = rng.uniform(9000, 9500, (ny, nx)).astype(np.float32)
    smax = smin + rng.uniform(30000, 40000, (ny, nx)).astype(np.float32)
    sref = smin + 400
    coeffs = np.stack(
        [
            rng.normal(0, 10, (ny, nx)),
            (smax - smin) / 2,
            rng.normal(0, 50, (ny, nx)),
        ]
    ).astype(np.float32)
    data = (sref + rng.uniform(0, 45000, (n, ny, nx))).astype(np.float32)
    groupdq = np.zeros((n, ny, nx), np.uint8)
    lin_dq = np.zeros((ny, nx), np.uint32)
    results = []
    for threads in (1, 3):
        cube = data.copy()
        flags = apply_linearity(
            cube, groupdq, coeffs, smin, smax, sref, lin_dq,
            do_not_flag_first=True, block_rows=3, threads=threads,
        )  # fmt: skip
        results.append((cube, flags))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][1].any()  # some pixels leave the fitted range
