"""Simulated L1 exposures carry real times instead of the schema's placeholders."""

import pytest
import roman_datamodels.datamodels as dm
from astropy.time import Time

from romanimpreprocess.simulate.metadata import DEFAULT_START, set_exposure_metadata


def test_times_ephemeris_and_pointing_are_filled_and_valid():
    raw = dm.ScienceRawModel.create_fake_data(shape=(3, 8, 32))
    assert raw.meta.ephemeris.time == -999999  # what the schema's fake data holds
    pattern = [[0], [1, 2, 3], [4, 5, 6, 7, 8, 9]]
    start = Time("2026-05-02T03:04:05", scale="utc")
    set_exposure_metadata(
        raw.meta,
        read_pattern=pattern,
        frame_time=3.04,
        start=start,
        ra=10,
        dec=-40,
        pa=5,
    )
    raw.validate()
    duration = 10 * 3.04
    assert raw.meta.exposure.start_time == start
    assert (raw.meta.exposure.end_time - start).sec == pytest.approx(duration, abs=1e-6)
    assert raw.meta.exposure.exposure_time == pytest.approx(duration)
    assert raw.meta.ephemeris.time == pytest.approx(start.mjd + duration / 2 / 86400)
    assert raw.meta.pointing.target_ra == 10 and raw.meta.pointing.target_dec == -40
    assert raw.meta.wcsinfo.roll_ref == 5
    assert raw.meta.visit.start_time == start


def test_default_start():
    raw = dm.ScienceRawModel.create_fake_data(shape=(3, 8, 32))
    set_exposure_metadata(raw.meta, read_pattern=[[0], [1], [2]], frame_time=3.04)
    raw.validate()
    assert raw.meta.exposure.start_time.isot.startswith(DEFAULT_START)
    assert raw.meta.ephemeris.time > 60000
