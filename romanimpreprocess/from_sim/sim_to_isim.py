"""An L1 exposure from an OpenUniverse-style truth image (legacy ``sim_to_isim``).

``run_config(config)`` reads the truth image ``IN``, builds the ramp with the physics of
the calibration files in ``CALDIR`` and writes the L1 ASDF ``OUT`` and its WCS header
``<OUT stem>_asdf_wcshead.txt`` (and with ``FITSOUT`` a FITS copy of the resultants,
``<OUT stem>_asdf_to.fits``). ``python -m romanimpreprocess.from_sim.sim_to_isim
config.yaml`` does the same from a YAML file.

Config keys (the legacy 1.0.0 L1 keys, plus ``SKY``):

``IN``
    Truth image, FITS, named ``..._<obsid>_<sca>.fits``: HDU 0 holds electrons per
    pixel over ``EXPTIME`` s on the SCA's native grid; the header has ``EXPTIME``,
    ``FILTER``, ``RA_TARG``, ``DEC_TARG``, ``PA_OBSY``, ``DATE-OBS`` (optional) and a
    TAN-SIP WCS.
``OUT``
    L1 file to write (``.asdf``).
``READS``
    Flat list ``[a0, b0, a1, b1, ...]``: resultant ``i`` is the mean of frames
    ``a_i .. b_i - 1`` (frame 0 is the reset read; frames are ``FRAME_TIME`` apart).
``CALDIR``
    Calibration files, the gen_cal_image keys: ``gain``, ``read``,
    ``linearitylegendre``, ``dark``, ``flat`` (required), ``ipc4d``, ``biascorr``
    (used when given); ``saturation``, ``mask``, ``dark_decay`` are ignored here;
    ``NO_AMP33: True`` leaves the reference output without the read file's model.
``CNORM``
    Scale of the truth image (default 1).
``SEED``
    Random seed (default 43).
``FITSOUT``
    Also write the FITS copy of the resultants and amp33 (default False).
``EXTRACT_REF``
    ``{data_encoding_offset: int}``: write the first resultant as
    ``reference_read`` (and ``reference_amp33``) and the others as differences from it
    plus the offset, as the flight format does.
``SKY``
    Uniform sky added to the truth image, electrons per second per pixel in the
    units of the truth image (default 1.5, the simulator's sky).

Scaling: the pixel collects ``CNORM * (g / g_ideal) * (image / EXPTIME + SKY) * F /
(A / Omega_ideal)`` electrons per second, ``F`` the IPC-deconvolved flat the pipeline
divides by, ``A`` the pixel area of the WCS and ``g`` the gain, plus the IPC-deconvolved
dark current; so the calibrated L2 is ``CNORM * (image / EXPTIME + SKY) / g_ideal`` in
DN/s. The detector grid is the truth image flipped (columns reversed for SCAs 3, 6, ...,
18, rows reversed for the others), the WCS with it; the WCS header file is that
flipped header with CRPIX1/2 reduced by 1 (pixel (0, 0) is the first science pixel,
the FITSWCS convention of the pipeline). Read noise, reset noise, 1/f noise, the
reference pixels (the dark cube of the calibration plus noise) and the reference
output come from the read-noise file, as the noise realisations of
`romanimpreprocess.noise` make them; no cosmic rays are added.
"""

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from romanimpreprocess.constants import AMP33_WIDTH, OMEGA_IDEAL, REF_BORDER

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SKY",
    "FRAME_TIME",
    "G_IDEAL",
    "SimToIsimConfig",
    "TruthImage",
    "check_config",
    "main",
    "read_truth",
    "run_config",
]

log = logging.getLogger(__name__)

G_IDEAL = 1.458  # e/DN, the gain the flat normalises to
FRAME_TIME = 3.04  # s between frames
DEFAULT_SEED = 43
DEFAULT_SKY = 1.5  # e/s per pixel, as romanimpreprocess.simulate
_REQUIRED_CALDIR = ("gain", "read", "linearitylegendre", "dark", "flat")
_USED_CALDIR = (*_REQUIRED_CALDIR, "ipc4d", "biascorr")
_IGNORED_CALDIR = ("saturation", "mask", "dark_decay", "photom", "NO_AMP33")
_KNOWN_KEYS = (
    "IN",
    "OUT",
    "READS",
    "CALDIR",
    "CNORM",
    "SEED",
    "FITSOUT",
    "EXTRACT_REF",
    "SKY",
)
_TRUTH_NAME = re.compile(r"_(\d+)_(\d+)\.fits$")


@dataclass
class SimToIsimConfig:
    """A checked ``run_config`` configuration (paths absolute)."""

    input: str
    output: str
    read_pattern: list
    caldir: dict
    cnorm: float = 1.0
    seed: int = DEFAULT_SEED
    fits_output: bool = False
    encoding_offset: int | None = None  # None: no EXTRACT_REF
    sky: float = DEFAULT_SKY
    no_amp33: bool = False

    @property
    def wcs_header_path(self):
        """``<OUT stem>_asdf_wcshead.txt``."""
        return self.output[:-5] + "_asdf_wcshead.txt"

    @property
    def fits_path(self):
        """``<OUT stem>_asdf_to.fits``."""
        return self.output[:-5] + "_asdf_to.fits"


def _is_int(value):
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value):
    return (_is_int(value) or isinstance(value, float | np.floating)) and np.isfinite(
        value
    )


def _read_pattern(reads, problems):
    if not isinstance(reads, list | tuple) or not all(_is_int(r) for r in reads):
        problems.append(f"READS: expected a flat list of integers, got {reads!r}")
        return None
    if len(reads) % 2 or len(reads) < 6:
        problems.append(
            f"READS: need an even number (>= 6) of frame numbers [first, last+1) per "
            f"resultant, got {len(reads)}"
        )
        return None
    pattern = []
    for i in range(0, len(reads), 2):
        first, stop = int(reads[i]), int(reads[i + 1])
        if first < 0 or stop <= first:
            problems.append(
                f"READS: resultant {i // 2} [{first}, {stop}) is empty or negative"
            )
            return None
        if pattern and first <= pattern[-1][-1]:
            problems.append(
                f"READS: resultant {i // 2} starts at frame {first}, not after the "
                f"previous one (frame {pattern[-1][-1]})"
            )
            return None
        pattern.append(list(range(first, stop)))
    return pattern


def check_config(config, *, base_dir=None) -> SimToIsimConfig:
    """Check a ``run_config`` dict; every problem is reported in one ValueError."""
    if not isinstance(config, dict):
        raise TypeError(f"sim_to_isim config: expected a mapping, got {config!r}")
    base = os.getcwd() if base_dir is None else os.fspath(base_dir)
    problems = []

    def path(key):
        value = config.get(key)
        if not isinstance(value, str | os.PathLike) or not os.fspath(value):
            problems.append(f"{key}: missing or not a path")
            return None
        return os.path.abspath(os.path.join(base, os.path.expanduser(os.fspath(value))))

    unknown = [k for k in config if k not in _KNOWN_KEYS]
    if unknown:
        log.warning(
            "sim_to_isim: ignoring key(s) %s (known: %s)",
            ", ".join(map(str, unknown)),
            ", ".join(_KNOWN_KEYS),
        )
    source = path("IN")
    if source is not None:
        if not os.path.isfile(source):
            problems.append(f"IN: {source}: no such file")
        elif not _TRUTH_NAME.search(os.path.basename(source)):
            problems.append(
                f"IN: {source}: the name must end in _<obsid>_<sca>.fits (the SCA "
                "sets the orientation)"
            )
        elif not 1 <= int(_TRUTH_NAME.search(source).group(2)) <= 18:
            problems.append(f"IN: {source}: SCA number outside 1..18")
    output = path("OUT")
    if output is not None and not output.endswith(".asdf"):
        problems.append(f"OUT: {output}: must end in .asdf")
    pattern = _read_pattern(config.get("READS"), problems)
    caldir = config.get("CALDIR")
    files = {}
    no_amp33 = False
    if not isinstance(caldir, dict):
        problems.append("CALDIR: missing or not a mapping of calibration files")
    else:
        for key in _REQUIRED_CALDIR:
            if key not in caldir:
                problems.append(f"CALDIR.{key}: missing (needed for the L1 physics)")
        for key, value in caldir.items():
            if key == "NO_AMP33":
                no_amp33 = bool(value)
                continue
            if key not in _USED_CALDIR:
                if key not in _IGNORED_CALDIR:
                    problems.append(
                        f"CALDIR.{key}: unknown key (known: "
                        f"{', '.join(_USED_CALDIR + _IGNORED_CALDIR)})"
                    )
                continue
            if not isinstance(value, str | os.PathLike):
                problems.append(f"CALDIR.{key}: not a path: {value!r}")
                continue
            full = os.path.abspath(os.path.join(base, os.path.expanduser(value)))
            if not os.path.isfile(full):
                problems.append(f"CALDIR.{key}: {full}: no such file")
            files[key] = full
    cnorm = config.get("CNORM", 1.0)
    if not _is_number(cnorm) or cnorm <= 0:
        problems.append(f"CNORM: must be a positive number, got {cnorm!r}")
    seed = config.get("SEED", DEFAULT_SEED)
    if not _is_int(seed) or seed < 0:
        problems.append(f"SEED: must be a non-negative integer, got {seed!r}")
    fits_output = config.get("FITSOUT", False)
    if not isinstance(fits_output, bool):
        problems.append(f"FITSOUT: must be true or false, got {fits_output!r}")
    sky = config.get("SKY", DEFAULT_SKY)
    if not _is_number(sky) or sky < 0:
        problems.append(f"SKY: must be a number >= 0, got {sky!r}")
    offset = None
    if "EXTRACT_REF" in config:
        extract = config["EXTRACT_REF"]
        if extract is None:
            extract = {}
        if not isinstance(extract, dict):
            problems.append(f"EXTRACT_REF: expected a mapping, got {extract!r}")
        else:
            offset = extract.get("data_encoding_offset", 0)
            if not _is_int(offset) or not 0 <= offset <= 65535:
                problems.append(
                    "EXTRACT_REF.data_encoding_offset: must be an integer 0..65535, "
                    f"got {offset!r}"
                )
    if problems:
        raise ValueError(
            f"sim_to_isim config: {len(problems)} problem(s), nothing was done:\n  - "
            + "\n  - ".join(problems)
        )
    return SimToIsimConfig(
        input=source,
        output=output,
        read_pattern=pattern,
        caldir=files,
        cnorm=float(cnorm),
        seed=int(seed),
        fits_output=bool(fits_output),
        encoding_offset=None if offset is None else int(offset),
        sky=float(sky),
        no_amp33=no_amp33,
    )


@dataclass
class TruthImage:
    """A truth image on the detector grid.

    ``rate`` is e/s per pixel (flipped); ``header`` the flipped FITS header (CRPIX
    1-based); ``wcs_header`` the same with CRPIX reduced by 1 (the FITSWCS file).
    """

    rate: np.ndarray
    header: object
    wcs_header: object
    obsid: int
    sca: int
    filter: str
    ra: float
    dec: float
    pa: float
    date: str | None
    exptime: float


_TRUTH_KEYS = ("EXPTIME", "FILTER", "RA_TARG", "DEC_TARG", "PA_OBSY")
_WCS_KEYS = ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2")


def read_truth(path) -> TruthImage:
    """Read and orient a truth image (see the module docstring)."""
    from astropy.io import fits

    from romanimpreprocess.from_sim.ramps import orient_truth

    path = os.fspath(path)
    match = _TRUTH_NAME.search(os.path.basename(path))
    if not match:
        raise ValueError(f"IN: {path}: the name must end in _<obsid>_<sca>.fits")
    obsid, sca = int(match.group(1)), int(match.group(2))
    try:
        with fits.open(path) as hdus:
            data = np.array(hdus[0].data, dtype=np.float64)
            header = hdus[0].header.copy()
    except OSError as err:
        raise ValueError(f"IN: {path}: not a readable FITS file ({err})") from err
    problems = [
        f"header key {k} missing" for k in _TRUTH_KEYS + _WCS_KEYS if k not in header
    ]
    if data.ndim != 2:
        problems.append(f"HDU 0 must be a 2-D image, got shape {data.shape}")
    elif not np.isfinite(data).all():
        problems.append(f"{int((~np.isfinite(data)).sum())} non-finite pixel(s)")
    if "CTYPE1" in header and not str(header["CTYPE1"]).startswith("RA---TAN"):
        problems.append(f"CTYPE1 {header['CTYPE1']!r} is not a TAN(-SIP) projection")
    if not any(k in header for k in ("CD1_1", "PC1_1")):
        problems.append("no CD (or PC) matrix in the header")
    exptime = header.get("EXPTIME")
    if "EXPTIME" in header and not (_is_number(exptime) and exptime > 0):
        problems.append(f"EXPTIME must be a positive number, got {exptime!r}")
    if problems:
        raise ValueError(f"IN: {path}: " + "; ".join(problems))
    data, header = orient_truth(data, header, sca)
    wcs_header = header.copy()
    wcs_header["CRPIX1"] = float(header["CRPIX1"]) - 1
    wcs_header["CRPIX2"] = float(header["CRPIX2"]) - 1
    if "CTYPE1" in wcs_header and not str(wcs_header["CTYPE1"]).endswith("-SIP"):
        # the pipeline's FITSWCS reader takes TAN-SIP headers; no SIP terms = TAN
        wcs_header["CTYPE1"] = "RA---TAN-SIP"
        wcs_header["CTYPE2"] = "DEC--TAN-SIP"
        wcs_header["A_ORDER"] = wcs_header["B_ORDER"] = 0
    wcs_header["COMMENT"] = "truth WCS from romanimpreprocess.from_sim.sim_to_isim"
    date = header.get("DATE-OBS")
    if date is not None:
        # ISO with a T (the FITS standard form; astropy warns about a space)
        wcs_header["DATE-OBS"] = str(date).strip().replace(" ", "T")
        try:
            from astropy.time import Time

            # with MJD-OBS present astropy does not derive (and warn about) it
            wcs_header["MJD-OBS"] = float(Time(wcs_header["DATE-OBS"], scale="utc").mjd)
        except ValueError:
            pass  # reported by _l1_model, which needs the date too
    return TruthImage(
        rate=data / float(exptime),
        header=header,
        wcs_header=wcs_header,
        obsid=obsid,
        sca=sca,
        filter=str(header["FILTER"]).strip(),
        ra=float(header["RA_TARG"]),
        dec=float(header["DEC_TARG"]),
        pa=float(header["PA_OBSY"]),
        date=None if date is None else str(date).strip(),
        exptime=float(exptime),
    )


def _optical_element(filter_name):
    """``F`` + the wavelength digits: ``H158`` -> ``F158`` (the schema's names)."""
    from roman_datamodels.datamodels import ScienceRawModel

    element = "F" + filter_name[1:4]
    raw = ScienceRawModel.create_fake_data(shape=(1, 8, 32))
    try:
        raw.meta.instrument.optical_element = element
        raw.validate()
    except Exception as err:
        raise ValueError(
            f"IN: FILTER {filter_name!r} gives optical element {element!r}, not a WFI "
            "filter of the schema"
        ) from err
    return element


class _Calibration:
    """The calibration arrays the physics needs (science area unless stated)."""

    def __init__(self, caldir, ns, nres):
        from romanimpreprocess.dark_current.dark_current import deconvolved_dark_slope
        from romanimpreprocess.datamodels import Geometry, open_reference
        from romanimpreprocess.flatfield.flatfield import prepare_flat
        from romanimpreprocess.ipc.ipc import kernel_border

        b = REF_BORDER
        n = ns + 2 * b
        geometry = Geometry(nresultants=nres, ny=n, nx=n)
        sci = (slice(b, n - b), slice(b, n - b))

        def ref(key, reftype, fields):
            try:
                return open_reference(reftype, caldir[key], geometry, fields=fields)
            except Exception as err:
                raise ValueError(f"CALDIR.{key}: {err}") from err

        with ref("gain", "gain", ["data"]) as f:
            gain_full = np.array(f.data, dtype=np.float64)
        with ref("read", "readnoise", ["data", "resetnoise", "anc", "amp33"]) as f:
            self.read_noise = np.array(f.data, dtype=np.float32)
            reset = f.get("resetnoise")
            self.reset_noise = (
                np.zeros((n, n), np.float32)
                if reset is None
                else np.array(reset, dtype=np.float32)
            )
            anc = f.get("anc") or {}
            self.c_pink = float(anc.get("C_PINK", 0.0))
            self.u_pink = float(anc.get("U_PINK", 0.0))
            self.amp33_model = f.get("amp33")
        with ref("linearitylegendre", "linearitylegendre", None) as f:
            self.coeffs = np.array(f.data[(slice(None), *sci)], dtype=np.float64)
            self.smin = np.array(f.Smin[sci], dtype=np.float64)
            self.smax = np.array(f.Smax[sci], dtype=np.float64)
            self.sref = np.array(f.Sref[sci], dtype=np.float64)
        self.kernel = None
        if "ipc4d" in caldir:
            with ref("ipc4d", "ipc4d", ["data"]) as f:
                # float32 (0.6 GB on a full frame), as the pipeline reads it
                kernel = np.array(f.data, dtype=np.float32)
            try:
                kb = kernel_border((n, n), kernel.shape)
            except ValueError as err:
                raise ValueError(f"CALDIR.ipc4d: {caldir['ipc4d']}: {err}") from None
            d = b - kb
            self.kernel = np.ascontiguousarray(
                kernel[:, :, d : kernel.shape[2] - d, d : kernel.shape[3] - d]
            )
            if self.kernel.shape[2:] != (ns, ns):
                raise ValueError(
                    f"CALDIR.ipc4d: {caldir['ipc4d']}: kernel does not cover the "
                    f"{ns}x{ns} science area"
                )
        with ref("flat", "flat", ["data"]) as f:
            flat = np.array(f.data, dtype=np.float32)
        self.flat, _, _ = prepare_flat(flat, self.kernel, gain_full, b)
        with ref("dark", "dark", ["data", "dark_slope"]) as f:
            ndark = f.data.shape[0]
            if ndark < nres:
                raise ValueError(
                    f"CALDIR.dark: {caldir['dark']}: {ndark} dark planes, the read "
                    f"pattern has {nres} resultants"
                )
            self.dark_cube = np.array(f.data[ndark - nres :], dtype=np.float32)
            slope, _ = deconvolved_dark_slope(f.dark_slope, self.kernel, gain_full)
        self.gain = gain_full[sci]
        if not (self.gain > 0).all():
            raise ValueError(
                f"CALDIR.gain: {caldir['gain']}: {int((self.gain <= 0).sum())} "
                "science pixel(s) with gain <= 0"
            )
        self.dark_e = np.clip(slope[sci].astype(np.float64) * self.gain, 0.0, None)
        self.bias = None
        self.bias_t0 = 0.0
        if "biascorr" in caldir:
            with ref("biascorr", "biascorr", ["data", "t0"]) as f:
                nbias = f.data.shape[0]
                if nbias < nres or f.data.shape[1:] != (ns, ns):
                    raise ValueError(
                        f"CALDIR.biascorr: {caldir['biascorr']}: shape "
                        f"{f.data.shape}, need >= {nres} planes of {ns}x{ns}"
                    )
                self.bias = np.array(f.data[nbias - nres :], dtype=np.float32)
                self.bias_t0 = float(f.get("t0") or 0.0)


def _electron_rate(truth, cal, cfg):
    """e/s per science pixel: the scaled truth and sky through the flat, plus dark."""
    from romanimpreprocess.datamodels.wcs import pixel_area_map

    area_factor = pixel_area_map(truth.wcs_header, truth.rate.shape) / OMEGA_IDEAL
    signal = cfg.cnorm * (truth.rate + cfg.sky)
    rate = signal * (cal.gain / G_IDEAL) * cal.flat / area_factor
    return rate + cal.dark_e, area_factor


def _amp33_model(cal, n):
    """The reference-output model of the read file, or a flat one made up."""
    model = cal.amp33_model
    if model is not None and model.get("valid", True) is not False:
        return dict(model, valid=True)
    # No model: a constant level at the median reference-pixel dark, the median
    # read noise, no correlated noise.
    level = float(np.median(cal.dark_cube[-1][:, :REF_BORDER]))
    return {
        "valid": True,
        "med": np.full((n, AMP33_WIDTH), level, np.float32),
        "std": np.full((n, AMP33_WIDTH), float(np.median(cal.read_noise)), np.float32),
        "M_PINK": 0.0,
        "RU_PINK": 0.0,
    }


def simulate_l1(truth: TruthImage, cfg: SimToIsimConfig):
    """``(data uint16 (nres, n, n), amp33 uint16, area_factor)`` of the exposure."""
    from romanimpreprocess.from_sim.ramps import ramp_resultants
    from romanimpreprocess.noise.read_ramp import read_noise_ramp

    ny, nx = truth.rate.shape
    if ny != nx:
        raise ValueError(f"IN: {cfg.input}: the image must be square, got {ny}x{nx}")
    ns = ny
    n = ns + 2 * REF_BORDER
    nres = len(cfg.read_pattern)
    cal = _Calibration(cfg.caldir, ns, nres)
    if cal.read_noise.shape != (n, n):
        raise ValueError(
            f"IN: {cfg.input}: a {ns}x{ns} image needs {n}x{n} calibration files, "
            f"CALDIR.read is {cal.read_noise.shape}"
        )
    rng = np.random.default_rng(cfg.seed)
    rate_e, area_factor = _electron_rate(truth, cal, cfg)
    b = REF_BORDER
    sci = (slice(b, n - b), slice(b, n - b))
    reset_dn = cal.reset_noise[sci] * rng.standard_normal((ns, ns))
    start = None if not cal.bias_t0 else -cal.bias_t0 * cal.dark_e
    science = ramp_resultants(
        rate_e,
        cfg.read_pattern,
        FRAME_TIME,
        gain=cal.gain,
        coeffs=cal.coeffs,
        smin=cal.smin,
        smax=cal.smax,
        s_reset=cal.sref + reset_dn,
        rng=rng,
        kernel=cal.kernel,
        start_charge=start,
    )
    if cal.bias is not None:
        science += cal.bias
    frames = np.zeros((nres, n, n), dtype=np.float32)
    frames[(slice(None), *sci)] = science
    del science
    data, amp33 = read_noise_ramp(
        frames,
        None,
        read_noise=cal.read_noise,
        n_frames=[len(r) for r in cfg.read_pattern],
        rng=rng,
        reset_noise=cal.reset_noise,
        c_pink=cal.c_pink,
        u_pink=cal.u_pink,
        amp33_model=None if cfg.no_amp33 else _amp33_model(cal, n),
        border_base=cal.dark_cube,
        replace_amp33=True,
    )
    if amp33 is None:  # NO_AMP33: a flat reference output at the dark level
        amp33 = np.repeat(
            np.median(cal.dark_cube[:, :, :b], axis=(1, 2))[:, None, None],
            n,
            axis=1,
        )
        amp33 = np.repeat(amp33, AMP33_WIDTH, axis=2).round().astype(np.uint16)
    return data, amp33, area_factor


def _l1_model(truth, cfg, data, amp33):
    from astropy.time import Time
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.simulate.metadata import set_exposure_metadata

    nres, n, _ = data.shape
    raw = dm.ScienceRawModel.create_fake_data(shape=(nres, n, n))
    raw.meta.instrument.detector = f"WFI{truth.sca:02d}"
    raw.meta.instrument.optical_element = _optical_element(truth.filter)
    start = None
    if truth.date:
        try:
            start = Time(truth.date.replace(" ", "T"), scale="utc")
        except ValueError as err:
            raise ValueError(
                f"IN: {cfg.input}: DATE-OBS {truth.date!r}: {err}"
            ) from err
    set_exposure_metadata(
        raw.meta,
        read_pattern=cfg.read_pattern,
        frame_time=FRAME_TIME,
        start=start,
        ra=truth.ra,
        dec=truth.dec,
        pa=truth.pa,
        ma_table_name=f"SIM_{len(cfg.read_pattern)}_{cfg.read_pattern[-1][-1]}",
    )
    raw.meta.observation.observation = int(truth.obsid) % 1000000
    for key in ("xstart", "xstop", "ystart", "ystop"):
        raw.meta.guide_star[f"window_{key}"] = -1
    for key in ("reference_read", "reference_amp33", "resultantdq"):
        if key in raw:
            delattr(raw, key)
    if cfg.encoding_offset is None:
        raw.data = data
        raw.amp33 = amp33
        raw.meta.instrument.data_encoding_offset = 0
        return raw
    # Flight format: the reset read apart, the others relative to it plus an offset.
    offset = cfg.encoding_offset
    ref = data[0].astype(np.int32) - offset
    ref33 = amp33[0].astype(np.int32) - offset
    raw.data = np.clip(data[1:].astype(np.int32) - ref, 0, 65535).astype(np.uint16)
    raw.amp33 = np.clip(amp33[1:].astype(np.int32) - ref33, 0, 65535).astype(np.uint16)
    raw.reference_read = data[0].copy()
    raw.reference_amp33 = amp33[0].copy()
    raw.meta.instrument.data_encoding_offset = offset
    raw.meta.exposure.read_pattern = cfg.read_pattern[1:]
    raw.meta.exposure.nresultants = nres - 1
    return raw


def _write_all(raw, truth, cfg):
    """L1 ASDF, WCS header and FITS copy, each written to a temporary and renamed."""
    import tempfile

    from astropy.io import fits

    directory = os.path.dirname(cfg.output)
    os.makedirs(directory, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=".sim_to_isim-", dir=directory)
    try:
        tmp_l1 = os.path.join(tmpdir, os.path.basename(cfg.output))
        raw.save(tmp_l1)
        tmp_wcs = os.path.join(tmpdir, "wcshead.txt")
        truth.wcs_header.tofile(tmp_wcs, overwrite=True)
        if cfg.fits_output:
            data = np.asarray(raw.data)
            cube = np.concatenate([data, np.asarray(raw.amp33)], axis=2)
            tmp_fits = os.path.join(tmpdir, "copy.fits")
            fits.PrimaryHDU(cube).writeto(tmp_fits)
            os.replace(tmp_fits, cfg.fits_path)
        os.replace(tmp_wcs, cfg.wcs_header_path)
        os.replace(tmp_l1, cfg.output)
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)


def run_config(config, *, base_dir=None):
    """Make the L1 exposure of a truth image; see the module docstring.

    Returns the path of the L1 file written (``OUT``).
    """
    import time

    cfg = check_config(config, base_dir=base_dir)
    t0 = time.perf_counter()
    truth = read_truth(cfg.input)
    log.info(
        "sim_to_isim: %s (obs %d, SCA %d, %s, %dx%d) -> %s, %d resultants, seed %d",
        cfg.input,
        truth.obsid,
        truth.sca,
        truth.filter,
        *truth.rate.shape,
        cfg.output,
        len(cfg.read_pattern),
        cfg.seed,
    )
    data, amp33, _ = simulate_l1(truth, cfg)
    raw = _l1_model(truth, cfg, data, amp33)
    _write_all(raw, truth, cfg)
    log.info(
        "sim_to_isim: wrote %s and %s in %.1f s",
        cfg.output,
        cfg.wcs_header_path,
        time.perf_counter() - t0,
    )
    return cfg.output


def main(argv=None):
    """``python -m romanimpreprocess.from_sim.sim_to_isim config.yaml``."""
    import yaml

    parser = argparse.ArgumentParser(
        prog="python -m romanimpreprocess.from_sim.sim_to_isim",
        description="Make an L1 exposure from a truth image (legacy sim_to_isim keys).",
    )
    parser.add_argument(
        "config", help="YAML configuration (IN, OUT, READS, CALDIR, ...)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        with open(args.config) as f:
            config = yaml.safe_load(f)
        out = run_config(config)
    except (ValueError, OSError, yaml.YAMLError) as err:
        sys.stderr.write(f"sim_to_isim: {err}\n")
        return 1
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now, start_cli

    start_cli()
    exit_now(main())
