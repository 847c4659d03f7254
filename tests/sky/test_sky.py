"""Sky: PixelMask1, the mode estimate, the Legendre sky fit and the step."""

import numpy as np
import roman_datamodels.datamodels as dm
from roman_datamodels.dqflags import pixel

from romanimpreprocess.sky import SkyStep, sky


def _brute_mask(dq):
    ny, nx = dq.shape
    out = np.zeros(dq.shape, bool)
    shapes = {
        1: [(0, 0)],
        5: [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)],
        9: [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)],
        25: [(a, b) for a in range(-2, 3) for b in range(-2, 3)],
    }
    for y in range(ny):
        for x in range(nx):
            for name, footprint in sky.PIXEL_MASK1.items():
                if dq[y, x] & int(pixel[name]):
                    for dy, dx in shapes[footprint]:
                        if 0 <= y + dy < ny and 0 <= x + dx < nx:
                            out[y + dy, x + dx] = True
    return out


def test_pixel_mask1_matches_brute_force(rng):
    names = [*sky.PIXEL_MASK1, "SATURATED", "OUTLIER", "REFERENCE_PIXEL"]
    dq = np.zeros((24, 30), np.uint32)
    for _ in range(25):
        y, x = rng.integers(0, 24), rng.integers(0, 30)
        dq[y, x] |= np.uint32(pixel[names[rng.integers(len(names))]])
    np.testing.assert_array_equal(sky.pixel_mask1(dq), _brute_mask(dq))
    only_saturated = np.zeros((5, 5), np.uint32)
    only_saturated[2, 2] = pixel.SATURATED
    assert not sky.pixel_mask1(only_saturated).any()


def test_smooth_mode_finds_the_peak_of_a_skewed_sample(rng):
    peak = 10.0
    values = np.concatenate(
        [rng.normal(peak, 1.0, 200_000), peak + rng.exponential(8.0, 60_000)]
    )
    mode, width = sky.smooth_mode(values)
    assert abs(mode - peak) < 0.1
    # the median is pulled by the tail, the mode much less
    assert np.median(values) - peak > 3 * abs(mode - peak)
    assert width > 0


def test_bin4x4_means_and_nan_poisons():
    image = np.arange(64, dtype=float).reshape(8, 8)
    image[0, 0] = np.nan
    binned = sky.bin4x4(image)
    assert binned.shape == (2, 2)
    assert np.isnan(binned[0, 0])
    assert binned[1, 1] == image[4:, 4:].mean()


def test_medfit_recovers_a_legendre_surface(rng):
    ny, nx = 160, 200
    y, x = np.mgrid[0:ny, 0:nx]
    u, v = -1 + 2 * x / nx, -1 + 2 * y / ny
    true = 3.0 + 0.4 * v - 0.2 * u + 0.1 * (1.5 * u**2 - 0.5)
    image = (true + rng.normal(0, 0.01, true.shape)).astype(np.float32)
    coefs, model = sky.medfit(image, order=2)
    # order of coefs: (i, j) = (0,0) (0,1) (0,2) (1,0) (1,1) (2,0); i is the x order
    np.testing.assert_allclose(coefs, [3.0, 0.4, 0.0, -0.2, 0.0, 0.1], atol=5e-3)
    assert np.abs(model - true).max() < 0.01
    # the blocked matrix-product evaluation gives the same polynomial
    same_coefs, fast = sky.medfit(image, order=2, legacy_evaluation=False)
    np.testing.assert_array_equal(same_coefs, coefs)
    np.testing.assert_allclose(fast, model, rtol=1e-6)
    # a source filling one cell is ignored with clipping
    image[:20, :25] += 50.0
    clipped, _ = sky.medfit(image, order=2, clip=5.0)
    np.testing.assert_allclose(clipped, [3.0, 0.4, 0.0, -0.2, 0.0, 0.1], atol=5e-3)


def _image(rng, sky_level=2.5, shape=(120, 120)):
    model = dm.ImageModel.create_fake_data(shape=shape)
    model.data = rng.normal(sky_level, 0.05, shape).astype(np.float32)
    model.dq = np.zeros(shape, np.uint32)
    model.meta.exposure.read_pattern = [[0], [1, 2], [3, 4], [5, 6]]
    return model


def test_sky_step_estimates_and_subtracts(rng):
    model = _image(rng)
    model.dq[50:60, 50:60] = pixel.HOT
    model.data[50:60, 50:60] = 1000.0  # masked, must not bias anything
    out = SkyStep.call(model, order=1)
    info = out["processinfo"]
    assert abs(info["medsky"] - 2.5) < 0.01
    assert info["skyorder"] == 1
    assert len(info["skycoefs"]) == 3
    assert abs(np.median(out.data)) < 0.01
    assert abs(np.median(out["data_withsky"]) - 2.5) < 0.01


def test_sky_step_without_order_subtracts_nothing(rng):
    model = _image(rng)
    before = np.array(model.data)
    out = SkyStep.call(model)
    np.testing.assert_array_equal(out.data, before)
    assert out["processinfo"]["skyorder"] == -1
    assert len(out["processinfo"]["skycoefs"]) == 0


def test_strun_rip_sky(tmp_path, rng):
    import os
    import subprocess
    import sys

    import roman_datamodels as rdm

    model = dm.ImageModel.create_fake_data(shape=(64, 64))
    model.data = rng.normal(4.0, 0.05, (64, 64)).astype(np.float32)
    model.dq = np.zeros((64, 64), np.uint32)
    model.meta.exposure.read_pattern = [[0], [1, 2], [3, 4], [5, 6]]
    source = tmp_path / "in_cal.asdf"
    model.save(source)
    out = tmp_path / "sky_out.asdf"
    strun = os.path.join(os.path.dirname(sys.executable), "strun")
    proc = subprocess.run(
        [strun, "rip_sky", str(source), "--order=0", f"--output_file={out}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with rdm.open(out) as result:
        assert abs(float(np.median(result.data))) < 0.01
        assert abs(float(result["processinfo"]["medsky"]) - 4.0) < 0.01
