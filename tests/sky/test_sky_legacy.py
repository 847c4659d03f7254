"""The sky's legacy path against the legacy 1.0.0 (stored goldens, always run).

The legacy estimated the sky of the flat-fielded rate image in three parts: the
PixelMask1 bad-pixel mask of the full-frame dq, the smoothed mode of the 4x4-binned
masked full frame (``medsky``, the border included as zeros) and, with SKYORDER, a
Legendre fit to 8x8 cell medians of the science area subtracted from it. Our
``legacy_compat`` path must give the same mask and the same sky model bit for bit
(``data`` of the L2 is ``data_withsky`` minus the model), and ``medsky`` to 1e-8.
"""

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.sky import sky
from tests.linearity.legacy import legacy_case

B = REF_BORDER

SCRIPT = """
from romanimpreprocess.utils import maskhandling, sky
m = maskhandling.PixelMask1.build(inp["pdq"])
medsky, width = sky.smooth_mode(
    sky.binkxk(np.where(np.logical_not(m), inp["slope"], np.nan), 4))
coefs, model = sky.medfit(inp["slope"][4:-4, 4:-4], order=int(inp["order"]))
out.update(mask=m, medsky=medsky, width=width, coefs=coefs, model=model)
"""


def sky_inputs(rng, order):
    """A flat-fielded full-frame rate image: sky with a gradient, sources, flags."""
    n = 136  # 128 science + the 4-pixel border
    y, x = np.mgrid[0:n, 0:n] / n
    slope = 1.2 + 0.15 * x - 0.1 * y * y + rng.normal(0, 0.08, (n, n))
    for _ in range(12):  # sources, a few bright
        cy, cx = rng.uniform(B, n - B, 2)
        flux = np.exp(rng.uniform(np.log(2.0), np.log(500.0)))
        slope += flux * np.exp(-((y * n - cy) ** 2 + (x * n - cx) ** 2) / 4.0) / 12.6
    pdq = np.zeros((n, n), np.uint32)
    pdq[:B] = pdq[-B:] = pixel.REFERENCE_PIXEL
    pdq[:, :B] = pdq[:, -B:] = pixel.REFERENCE_PIXEL
    for name in ("HOT", "DEAD", "JUMP_DET", "DROPOUT", "SATURATED", "LOW_QE"):
        ys, xs = rng.integers(B, n - B, (2, 6))
        pdq[ys, xs] |= np.uint32(pixel[name])
    slope = slope.astype(np.float32)
    slope[:B] = slope[-B:] = 0.0  # the legacy's full frame: zero border
    slope[:, :B] = slope[:, -B:] = 0.0
    return {"slope": slope, "pdq": pdq, "order": order}


def test_legacy_compat_sky_matches_legacy_bit_for_bit(rng):
    for order in (1, 2):
        case = legacy_case(
            f"sky_order{order}", SCRIPT, lambda order=order: sky_inputs(rng, order)
        )
        inp, legacy = case.inputs, case.outputs
        assert int(inp["order"]) == order
        slope, pdq = inp["slope"], inp["pdq"]
        mask = sky.pixel_mask1(pdq)
        np.testing.assert_array_equal(mask, legacy["mask"])
        assert mask[B:-B, B:-B].sum() > 50  # the grown footprints are exercised
        medsky, _ = sky.smooth_mode(sky.bin4x4(np.where(mask, np.nan, slope)))
        # medsky is a diagnostic (processinfo); ours takes the Gaussian IQR as
        # 1.3489795 sigmas and steps the 21 points as ctr + sigma (k/10 - 1), the
        # legacy scipy's ppf and linspace: a few 1e-10 apart (the full-frame bench
        # shows the same), which a bit-level change of the mode would exceed
        assert abs(medsky - float(legacy["medsky"])) <= 1e-8 * abs(medsky)
        coefs, model = sky.medfit(
            slope[B:-B, B:-B], order=order, clip=None, legacy_evaluation=True
        )
        np.testing.assert_array_equal(coefs, legacy["coefs"])
        np.testing.assert_array_equal(model, legacy["model"])
