"""Exposure metadata of simulated L1 files: times, ephemeris time, pointing.

The schema's placeholders (-999999, 2020-01-01) would reach every product made from
the file (the full-field export of the survey tools writes ``meta.ephemeris.time`` as
its MJD); a simulated exposure carries real values instead.
"""

import numpy as np

__all__ = ["DEFAULT_START", "set_exposure_metadata"]

DEFAULT_START = "2027-06-01T00:00:00"  # UTC start of simulated exposures without a date


def set_exposure_metadata(
    meta,
    *,
    read_pattern,
    frame_time,
    start=None,
    ra=None,
    dec=None,
    pa=None,
    ma_table_name=None,
):
    """Fill the exposure, visit, ephemeris and pointing metadata of an L1 model.

    Parameters
    ----------
    meta : roman_datamodels node
        ``model.meta`` of a ``ScienceRawModel``.
    read_pattern : list of list of int
        Frames of each resultant (frame 0 is read at the reset).
    frame_time : float
        Seconds between frames.
    start : astropy.time.Time or None
        Exposure start (UTC); default `DEFAULT_START`.
    ra, dec, pa : float or None
        Pointing (deg): target position and aperture position angle; left as they
        are when None.
    ma_table_name : str or None
        Name of the read pattern (at most 30 characters kept).
    """
    from astropy.time import Time, TimeDelta

    if start is None:
        start = Time(DEFAULT_START, format="isot", scale="utc")
    start = Time(start, scale="utc")
    duration = (read_pattern[-1][-1] + 1) * float(frame_time)
    end = start + TimeDelta(duration, format="sec")
    exposure = meta.exposure
    exposure.read_pattern = [list(map(int, r)) for r in read_pattern]
    exposure.nresultants = len(read_pattern)
    exposure.frame_time = float(frame_time)
    exposure.exposure_time = float(duration)
    exposure.effective_exposure_time = float(duration)
    exposure.start_time = start
    exposure.end_time = end
    exposure.type = "WFI_IMAGE"
    exposure.truncated = False
    if ma_table_name is not None:
        exposure.ma_table_name = str(ma_table_name)[:30]
        exposure.ma_table_number = 0
    if "visit" in meta:
        meta.visit.start_time = start
        meta.visit.nexposures = 1
    if "ephemeris" in meta:
        # MJD (UTC) of the middle of the exposure; the position is not simulated.
        meta.ephemeris.time = float((start + TimeDelta(duration / 2, format="sec")).mjd)
        meta.ephemeris.type = "DEFINITIVE"
        meta.ephemeris.ephemeris_reference_frame = "EME2000"
        for key in ("spatial_x", "spatial_y", "spatial_z"):
            meta.ephemeris[key] = 0.0
        for key in ("velocity_x", "velocity_y", "velocity_z"):
            meta.ephemeris[key] = 0.0
    if ra is not None and dec is not None:
        pointing = meta.pointing
        pointing.target_ra = float(ra)
        pointing.target_dec = float(dec)
        pointing.ra_v1 = float(ra)
        pointing.dec_v1 = float(dec)
        if pa is not None:
            pointing.pa_aperture = float(pa)
            pointing.pa_v3 = float(pa)
        wcsinfo = meta.wcsinfo
        wcsinfo.ra_ref = float(ra)
        wcsinfo.dec_ref = float(dec)
        if pa is not None:
            wcsinfo.roll_ref = float(pa)
        meta.velocity_aberration.ra_reference = float(ra)
        meta.velocity_aberration.dec_reference = float(dec)
        meta.velocity_aberration.scale_factor = 1.0
    if np.isfinite(getattr(meta.velocity_aberration, "scale_factor", np.nan)) and (
        meta.velocity_aberration.scale_factor < 0
    ):
        meta.velocity_aberration.scale_factor = 1.0
