"""Simulate an L1 exposure and its calibration set, frame by frame, with known truth.

Physics (per pixel, per frame read at ``k * frame_time`` after the reset): Poisson
accumulation of sky + sources (scaled by the QE flat) and dark current in electrons,
cosmic-ray jumps at known frames, per-pixel IPC (forward kernel on the charge), the
gain, the inverse of the Legendre nonlinearity of the linearity file, the reset level
``Sref`` plus reset noise, white read noise, the 1/f noise of the read-noise file's
model in readout order (common to all channels and seen by amp33 through ``M_PINK``,
and independent per channel; docs/reference_files.rst, "The 1/f noise of the
read-noise file"), and per-channel reference drifts linear in row. Resultants are the means of their frames,
rounded to uint16 (saturating at the 16-bit limit).

The calibration files follow the legacy CALDIR layouts (docs/reference_files.rst) and
describe exactly the injected physics, so the pipeline's output can be compared with
the truth: ``rate_l2`` is what a perfect calibration returns (DN/s per ideal pixel).
"""

import itertools
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import asdf
import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import (
    AMP33_WIDTH,
    FULL_FRAME,
    N_CHANNELS,
    OMEGA_IDEAL,
    REF_BORDER,
)
from romanimpreprocess.simulate.field import apply_dither, tan_sip_header
from romanimpreprocess.utils.pink import channel_image, readout_pink

__all__ = [
    "READ_PATTERNS",
    "SimulationConfig",
    "SimulationPaths",
    "simulate_exposure",
    "write_simulation",
]

log = logging.getLogger(__name__)

G_IDEAL = 1.458  # e/DN, the gain the flat normalises to (legacy pars.g_ideal)
FRAME_TIME = 3.04  # s
FULL_WELL_LIN = 36000.0  # DN_lin above Sref: the fitted range of the linearity


def _pattern(sizes):
    out, frame = [[0]], 1
    for size in sizes:
        out.append(list(range(frame, frame + size)))
        frame += size
    return out


# Resultant 0 is the reset read (frame 0), excluded by EXCLUDE_FIRST as in the
# survey's L1 files; then multi-frame resultants.
READ_PATTERNS = {
    "survey6": _pattern([4, 8, 8, 12, 12]),
    "survey12": _pattern([4] * 11),
    "survey24": _pattern([2] * 23),
}


@dataclass
class SimulationConfig:
    """Options of a simulation (every one documented in docs/simulate.rst)."""

    size: int = FULL_FRAME
    read_pattern: object = "survey6"
    seed: int = 0
    frame_time: float = FRAME_TIME
    detector: str = "WFI01"
    optical_element: str = "F158"
    sky_rate: float = 1.5  # e/s per ideal pixel
    n_sources: int | None = None  # default: size**2 / 2000
    max_source_flux: float = 4.0e5  # e/s of the brightest point source (saturates)
    cosmic_ray_rate: float = 2.0e-5  # jumps per pixel per frame
    dark_rate: float = 0.01  # e/s
    hot_fraction: float = 5e-4
    dead_fraction: float = 2e-4
    low_qe_fraction: float = 5e-4
    read_noise: float = 6.5  # DN, single read
    reset_noise: float = 10.0  # DN
    c_pink: float = 1.0  # DN, common 1/f amplitude
    u_pink: float = 0.5  # DN, per-channel 1/f amplitude
    m_pink: float = 1.0  # coupling of amp33 to the common 1/f mode
    ru_pink: float = 0.3  # DN, amp33's own 1/f amplitude
    drift: float = 3.0  # DN, rms per-channel reference drift per frame
    ipc_alpha: float = 0.015  # nearest-neighbour IPC coupling (mean)
    nonlinearity: float = 2.0e-6  # beta of Phi = x + beta x^2 (1/DN)
    noiseless: bool = False  # no Poisson, read, reset, 1/f, drift noise, no CRs
    write_biascorr: bool = True
    write_dark_decay: bool = True
    # Pointing, dithers and a shared catalogue (docs/simulate.rst, "Dithers"):
    ra: float | None = None  # deg, sky position of the science-area centre; None random
    dec: float | None = None  # deg
    roll: float | None = None  # deg, position angle of the detector y axis; None random
    dither: tuple = (0.0, 0.0)  # (dx, dy) pixels the pointing is moved by
    catalog: object = None  # SourceCatalog: its sources replace the random ones
    noise_seed: int | None = None  # own noise (and cosmic rays), same detector
    zero_point: float = 26.4  # AB magnitude of a source giving 1 e/s at unit QE

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 64 or self.size % N_CHANNELS:
            raise ValueError(
                f"size: must be an integer >= 64 divisible by {N_CHANNELS}, got "
                f"{self.size!r}"
            )
        if isinstance(self.read_pattern, str):
            if self.read_pattern not in READ_PATTERNS:
                raise ValueError(
                    f"read_pattern: unknown pattern {self.read_pattern!r}; known: "
                    f"{', '.join(READ_PATTERNS)} or a list of lists of frames"
                )
        else:
            rp = [list(map(int, r)) for r in self.read_pattern]
            ok = len(rp) >= 3 and all(r for r in rp) and rp[0][0] >= 0
            # Each resultant a run of consecutive frames; frames may be skipped
            # between resultants.
            ok = (
                ok
                and all(r == list(range(r[0], r[0] + len(r))) for r in rp)
                and all(a[-1] < b[0] for a, b in itertools.pairwise(rp))
            )
            if not ok:
                raise ValueError(
                    "read_pattern: need >= 3 resultants, each a run of consecutive "
                    f"frames, in increasing order, got {self.read_pattern!r}"
                )
            self.read_pattern = rp
        if not (self.frame_time > 0):
            raise ValueError(f"frame_time: must be > 0, got {self.frame_time!r}")
        if not (
            isinstance(self.detector, str)
            and self.detector.startswith("WFI")
            and self.detector[3:].isdigit()
            and 1 <= int(self.detector[3:]) <= 18
        ):
            raise ValueError(f"detector: expected WFI01..WFI18, got {self.detector!r}")
        for name in ("sky_rate", "dark_rate", "read_noise", "cosmic_ray_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        from romanimpreprocess.simulate.field import check_pointing

        check_pointing(self)

    @property
    def pattern(self):
        """The read pattern as a list of lists of frame numbers."""
        if isinstance(self.read_pattern, str):
            return [list(r) for r in READ_PATTERNS[self.read_pattern]]
        return [list(r) for r in self.read_pattern]


@dataclass
class SimulationPaths:
    """Files written by `write_simulation`."""

    l1: str
    wcs_header: str
    caldir: dict
    config_yaml: str
    truth: str
    out: str
    directory: str = ""
    timings: dict = field(default_factory=dict)


# ------------------------------------------------------------------ helpers
def _ipc_forward(image, kernel, border):
    """Forward per-pixel IPC on the science area of a full frame (new array)."""
    from romanimpreprocess.ipc.ipc import ipc_forward

    out = image.copy()
    b = border
    out[b:-b, b:-b] = ipc_forward(np.asarray(image[b:-b, b:-b], np.float32), kernel)
    return out


def _legendre_coefficients(smin, smax, sref, beta):
    """Legendre C_0..C_2 of Phi(S) = x + beta x^2, x = S - Sref, on z(S)."""
    a = (smax - smin) / 2.0
    c = smin + a - sref
    c0 = c + beta * c * c + beta * a * a / 3.0
    c1 = a + 2.0 * beta * a * c
    c2 = 2.0 * beta * a * a / 3.0
    return np.stack([c0, c1, c2]).astype(np.float32)


def _inverse_phi(lin, beta):
    """x with x + beta x^2 = lin (x >= 0 branch)."""
    return 2.0 * lin / (1.0 + np.sqrt(1.0 + 4.0 * beta * np.maximum(lin, -0.24 / beta)))


def wcs_header(config, ns):
    """A TAN-SIP header of the science area (CRPIX 0-based, at its centre)."""
    rng = np.random.default_rng([config.seed, 7])
    pa = np.radians(rng.uniform(0, 360) if config.roll is None else config.roll)
    ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-60, -20))
    if config.ra is not None:
        ra, dec = float(config.ra), float(config.dec)
    h = tan_sip_header(ra, dec, pa, (ns - 1) / 2.0)
    if any(config.dither):
        apply_dither(h, config.dither, ns)
    return h


def _noise_key(config):
    """Seed words of the noise streams: the seed, and the noise seed if set."""
    if config.noise_seed is None:
        return [config.seed]
    return [config.seed, 1_000_003, int(config.noise_seed)]


def _row_blocks(n, rows=256):
    edges = [*range(0, n, rows), n]
    return list(itertools.pairwise(edges))


def _frame_read_noise(config, rng, n, amp33_frame, amp33_std):
    """Correlated read noise of one frame: 1/f and reference drifts.

    The channels' noise is returned as an (n, n) float32 image; amp33's (its 1/f and
    white noise) is added to ``amp33_frame`` in place. The 1/f noise is the read-noise
    file's model (docs/reference_files.rst, "The 1/f noise of the read-noise file"),
    drawn by `romanimpreprocess.utils.pink` in float32; each channel also drifts by an
    offset and a slope in row.
    """
    cw = n // N_CHANNELS
    pink = (config.c_pink, config.u_pink, config.m_pink, config.ru_pink)
    noise = np.zeros((n, n), dtype=np.float32)
    if any(pink):
        series = readout_pink(
            rng, n, cw, n_channels=N_CHANNELS, amp33_width=AMP33_WIDTH, dtype=np.float32
        )
        channel_image(series, config.c_pink, config.u_pink, out=noise)
        amp33_frame += config.m_pink * config.c_pink * series.common[:, :AMP33_WIDTH]
        amp33_frame += config.ru_pink * series.own33
        del series
    drift_off = rng.normal(0.0, config.drift, N_CHANNELS)
    drift_slope = rng.normal(0.0, config.drift / n, N_CHANNELS)
    drift = drift_off[None, :] + drift_slope[None, :] * np.arange(n)[:, None]
    noise.reshape(n, N_CHANNELS, cw)[:] += drift.astype(np.float32)[:, :, None]
    amp33_frame += rng.standard_normal((n, AMP33_WIDTH)) * amp33_std
    return noise


def _read_frames(
    config, pattern, total_e, gain, kernel, sref, beta, read_noise, rng, shape
):
    """Accumulate charge frame by frame, read it out, average into resultants.

    Row blocks run in threads (numpy releases the GIL); every block draws from its
    own stream seeded by (seed, frame, block), so the result does not depend on the
    number of threads.
    """
    from concurrent.futures import ThreadPoolExecutor
    from itertools import repeat

    from romanimpreprocess.ipc.ipc import ipc_forward

    n = shape[0]
    b = REF_BORDER
    ns = n - 2 * b
    nres = len(pattern)
    nframes = pattern[-1][-1] + 1
    dt = config.frame_time
    noisy = not config.noiseless
    which = {f: i for i, frames in enumerate(pattern) for f in frames}
    sizes = np.array([len(r) for r in pattern], dtype=np.float32)
    sums = np.zeros((nres, n, n), dtype=np.float32)
    amp_sums = np.zeros((nres, n, AMP33_WIDTH), dtype=np.float64)
    charge = np.zeros((n, n), dtype=np.float32)
    lam = (total_e * dt).astype(np.float64)
    full_well_e = (FULL_WELL_LIN * 1.6 * gain).astype(np.float32)
    reset = (
        rng.normal(0.0, config.reset_noise, (n, n)) if noisy else np.zeros((n, n))
    ).astype(np.float32)
    amp33_med = rng.normal(8000.0, 20.0, (n, AMP33_WIDTH)).astype(np.float32)
    amp33_std = np.full((n, AMP33_WIDTH), 4.0, np.float32)
    beta32 = np.asarray(beta, dtype=np.float32)
    gain32 = np.asarray(gain, dtype=np.float32)
    npix = ns * ns
    starts, stops = zip(*_row_blocks(n), strict=True)
    jumps = []
    workers = max(1, min(os.cpu_count() or 1, 4))

    def add_poisson(frame, y0, y1):
        block_rng = np.random.default_rng([*_noise_key(config), 11, frame, y0])
        charge[y0:y1] += block_rng.poisson(lam[y0:y1]).astype(np.float32)

    def read_block(frame, i, y0, y1, row_noise):
        # IPC of the charge: science rows of this block plus a one-row halo.
        s0, s1 = max(y0, b) - b, min(y1, n - b) - b
        # float32 arithmetic: charge <= 1e5 e is resolved to ~0.01 e.
        block = charge[y0:y1].copy()
        if s1 > s0:
            h0, h1 = max(s0 - 1, 0), min(s1 + 1, ns)
            slab = ipc_forward(charge[b + h0 : b + h1, b:-b], kernel[:, :, h0:h1])
            block[s0 + b - y0 : s1 + b - y0, b:-b] = slab[s0 - h0 : s1 - h0]
        block /= gain32[y0:y1]
        raw = sref[y0:y1] + reset[y0:y1] + _inverse_phi(block, beta32[y0:y1])
        if noisy:
            block_rng = np.random.default_rng([*_noise_key(config), 13, frame, y0])
            noise = block_rng.standard_normal((y1 - y0, n), dtype=np.float32)
            raw += noise * read_noise[y0:y1]
            raw += row_noise[y0:y1]
        sums[i, y0:y1] += raw.astype(np.float32)

    with ThreadPoolExecutor(workers) as pool:
        for frame in range(nframes):
            if frame:
                if noisy:
                    list(pool.map(add_poisson, repeat(frame), starts, stops))
                else:
                    charge += lam.astype(np.float32)
                if noisy and config.cosmic_ray_rate > 0:
                    k = rng.poisson(config.cosmic_ray_rate * npix)
                    if k:
                        jy = rng.integers(b, n - b, k)
                        jx = rng.integers(b, n - b, k)
                        amp = rng.uniform(300.0, 5000.0, k)
                        np.add.at(charge, (jy, jx), amp.astype(np.float32))
                        jumps.extend(
                            zip(
                                jy.tolist(),
                                jx.tolist(),
                                [frame] * k,
                                amp.tolist(),
                                strict=True,
                            )
                        )
                np.minimum(charge, full_well_e, out=charge)
            if frame not in which:
                continue
            i = which[frame]
            amp33_frame = amp33_med.astype(np.float64)
            row_noise = None
            if noisy:
                row_noise = _frame_read_noise(config, rng, n, amp33_frame, amp33_std)
            list(
                pool.map(
                    read_block,
                    repeat(frame),
                    repeat(i),
                    starts,
                    stops,
                    repeat(row_noise),
                )
            )
            amp_sums[i] += amp33_frame
    resultants = np.empty((nres, n, n), dtype=np.uint16)
    for i in range(nres):
        resultants[i] = np.clip(np.rint(sums[i] / sizes[i]), 0, 65535)
    amp33 = np.clip(np.rint(amp_sums / sizes[:, None, None]), 0, 65535).astype(
        np.uint16
    )
    return resultants, amp33, jumps, charge, amp33_med, amp33_std


# --------------------------------------------------------------- simulation
@dataclass
class _Detector:
    """The detector's truth (full-frame arrays): what the calibration files describe."""

    gain: np.ndarray
    read_noise: np.ndarray
    sref: np.ndarray
    beta: np.ndarray
    smin: np.ndarray
    smax: np.ndarray
    qe: np.ndarray
    dark_e: np.ndarray
    bad: np.ndarray
    mask_dq: np.ndarray
    kernel: np.ndarray = None


def _detector(config, rng):
    """Gain, read noise, reset level, nonlinearity, QE, dark and bad pixels."""
    n = config.size
    b = REF_BORDER
    gain = rng.normal(1.8, 0.08, (n, n)).clip(1.4, 2.2)
    read_noise = (
        rng.normal(config.read_noise, 0.5, (n, n)).clip(3, 12).astype(np.float32)
    )
    sref = rng.normal(12000.0, 300.0, (n, n)).astype(np.float32)
    beta = np.float64(config.nonlinearity) * rng.uniform(0.8, 1.2, (n, n))
    smin = (sref - 600.0).astype(np.float32)
    smax = (sref + _inverse_phi(FULL_WELL_LIN, beta)).astype(np.float32)
    qe = np.ones((n, n))
    y, x = np.mgrid[0:n, 0:n] / n
    qe *= 1.0 + 0.03 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)
    qe *= rng.normal(1.0, 0.01, (n, n))
    dark_e = np.full((n, n), config.dark_rate) * rng.uniform(0.5, 1.5, (n, n))

    bad = np.zeros((n, n), dtype=np.uint32)
    npix = (n - 2 * b) ** 2

    def pick(fraction):
        k = max(round(fraction * npix), 1)
        ys = rng.integers(b, n - b, k)
        xs = rng.integers(b, n - b, k)
        return ys, xs

    ys, xs = pick(config.hot_fraction)
    dark_e[ys, xs] = rng.uniform(20.0, 60.0, ys.size)
    bad[ys, xs] |= np.uint32(pixel.HOT)
    ys, xs = pick(config.dead_fraction)
    qe[ys, xs] = 0.0
    bad[ys, xs] |= np.uint32(pixel.DEAD)
    ys, xs = pick(config.low_qe_fraction)
    qe[ys, xs] = 0.3
    bad[ys, xs] |= np.uint32(pixel.LOW_QE)
    mask_dq = bad.copy()
    mask_dq[:b, :] |= np.uint32(pixel.REFERENCE_PIXEL)
    mask_dq[-b:, :] |= np.uint32(pixel.REFERENCE_PIXEL)
    mask_dq[:, :b] |= np.uint32(pixel.REFERENCE_PIXEL)
    mask_dq[:, -b:] |= np.uint32(pixel.REFERENCE_PIXEL)
    return _Detector(gain, read_noise, sref, beta, smin, smax, qe, dark_e, bad, mask_dq)


def _ipc_kernel(config, rng, ns):
    """Per-pixel IPC kernel (science-area coordinates), zero couplings off the edge."""
    alpha = rng.normal(config.ipc_alpha, 0.002, (ns, ns)).clip(0.0, 0.03)
    kernel = np.zeros((3, 3, ns, ns), dtype=np.float32)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        kernel[1 + dy, 1 + dx] = alpha
    for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        kernel[1 + dy, 1 + dx] = 0.1 * alpha
    kernel[:, 0, :, 0] = 0
    kernel[:, 2, :, -1] = 0
    kernel[0, :, 0, :] = 0
    kernel[2, :, -1, :] = 0
    kernel[1, 1] = 1.0 - (kernel.sum(axis=(0, 1)) - kernel[1, 1])
    return kernel


def _scene(config, rng, header, detector):
    """The signal: sky + sources (e/s per ideal pixel) times QE, plus the dark.

    Returns ``(rate_e, total_e, n_sources, placed)``: the photo-electron rate, the
    rate the pixels integrate (zero on the reference border), the number of sources
    and the catalogue's placed sources (None without a catalogue).
    """
    n = config.size
    b = REF_BORDER
    sci = (slice(b, n - b), slice(b, n - b))
    scene = np.full((n, n), config.sky_rate)
    n_sources = config.n_sources
    placed = None
    if config.catalog is not None:
        from romanimpreprocess.simulate.field import catalog_on_detector

        fluxes, sigmas, cy, cx, placed = catalog_on_detector(config, header, n)
        n_sources = fluxes.size
    else:
        if n_sources is None:
            n_sources = max((n - 2 * b) ** 2 // 2000, 4)
        fluxes = np.exp(
            rng.uniform(np.log(50.0), np.log(config.max_source_flux), n_sources)
        )
        sigmas = np.where(
            rng.random(n_sources) < 0.3, rng.uniform(2.0, 4.0, n_sources), 1.1
        )
        cy = rng.uniform(b + 8, n - b - 8, n_sources)
        cx = rng.uniform(b + 8, n - b - 8, n_sources)
    half = 12
    grid = np.arange(-half, half + 1)
    for f, s, yc, xc in zip(fluxes, sigmas, cy, cx, strict=True):
        iy, ix = int(yc), int(xc)
        yy = grid[:, None] + iy
        xx = grid[None, :] + ix
        stamp = np.exp(-((yy - yc) ** 2 + (xx - xc) ** 2) / (2 * s * s))
        stamp *= f / stamp.sum()
        y0, x0 = max(iy - half, b), max(ix - half, b)
        y1, x1 = min(iy + half + 1, n - b), min(ix + half + 1, n - b)
        scene[y0:y1, x0:x1] += stamp[
            y0 - (iy - half) : y1 - (iy - half), x0 - (ix - half) : x1 - (ix - half)
        ]
    rate_e = np.zeros((n, n))
    rate_e[sci] = scene[sci] * detector.qe[sci]
    total_e = rate_e + detector.dark_e
    total_e[:b] = total_e[-b:] = 0
    total_e[:, :b] = total_e[:, -b:] = 0
    return rate_e, total_e, n_sources, placed


def _calibration(config, det, pattern, amp33_med, amp33_std, photom):
    """The calibration files' arrays: exactly the injected physics."""
    from romanimpreprocess.datamodels.geometry import resultant_times

    n = config.size
    b = REF_BORDER
    ns = n - 2 * b
    sci = (slice(b, n - b), slice(b, n - b))
    nres = len(pattern)
    gain, kernel = det.gain, det.kernel
    saturation = (np.clip(det.smax, 1, 65535) - 1).astype(np.float32)
    coeffs = _legendre_coefficients(det.smin, det.smax, det.sref, det.beta)
    tbar, _, _ = resultant_times(pattern, config.frame_time)
    dark_slope = np.zeros((n, n), np.float32)
    dark_slope[sci] = _ipc_forward(det.dark_e, kernel, b)[sci] / gain[sci]
    dark_cube = np.empty((nres, n, n), np.float32)
    for j in range(nres):
        ramp = np.zeros((n, n))
        ramp[sci] = (_ipc_forward(det.dark_e * tbar[j], kernel, b) / gain)[sci]
        dark_cube[j] = det.sref + _inverse_phi(ramp, det.beta)
    # The flat the pipeline must end up dividing by: QE x g_ideal/g; the file holds
    # its IPC-convolved version (the pipeline deconvolves it in electrons).
    flat_true = np.ones((n, n))
    flat_true[sci] = np.where(det.qe[sci] > 0, det.qe[sci], 1.0) * G_IDEAL / gain[sci]
    flat_file = np.ones((n, n), np.float32)
    flat_file[sci] = (
        _ipc_forward(flat_true * gain, kernel, b)[sci] / gain[sci]
    ).astype(np.float32)
    cal = {
        "gain": {"data": gain, "dq": np.zeros((n, n), np.uint32)},
        "read": {
            "data": det.read_noise,
            "resetnoise": np.full((n, n), config.reset_noise, np.float32),
            "anc": {"C_PINK": float(config.c_pink), "U_PINK": float(config.u_pink)},
            "amp33": {
                "valid": True,
                "med": amp33_med,
                "std": amp33_std,
                "M_PINK": float(config.m_pink),
                "RU_PINK": float(config.ru_pink),
            },
        },
        "linearitylegendre": {
            "data": coeffs,
            "Smin": det.smin,
            "Smax": det.smax,
            "Sref": det.sref,
            "dq": np.zeros((n, n), np.uint32),
        },
        "saturation": {"data": saturation, "dq": np.zeros((n, n), np.uint32)},
        "dark": {
            "data": dark_cube,
            "dark_slope": dark_slope,
            "dq": np.zeros((n, n), np.uint32),
        },
        "ipc4d": {"data": kernel},
        "flat": {"data": flat_file, "dq": np.zeros((n, n), np.uint32)},
        "mask": {"dq": det.mask_dq},
        "photom": photom,
    }
    if config.write_biascorr:
        # The simulated dark follows Sref + Phi^-1(dark t) from the reset exactly,
        # so the bias correction is zero (t0 = 0).
        cal["biascorr"] = {"data": np.zeros((nres, ns, ns), np.float32), "t0": 0.0}
    if config.write_dark_decay:
        # No dark-decay signal injected: zero amplitudes for every detector.
        cal["dark_decay"] = {
            "decay_table": {
                f"WFI{k:02d}": {"amplitude": 0.0, "time_constant": 20.0}
                for k in range(1, 19)
            }
        }
    return cal, np.clip(flat_true[sci], 0.1, 10.0)


def _truth(config, det, pattern, rate_e, area_factor, flat_used, charge, jumps):
    """What a perfect calibration returns, and the injected events."""
    n = config.size
    b = REF_BORDER
    sci = (slice(b, n - b), slice(b, n - b))
    gain = det.gain
    rate_dn = rate_e[sci] / gain[sci]
    rate_l2 = rate_dn * area_factor / flat_used
    saturated = np.zeros((n, n), bool)
    # Beyond the fitted range of the linearity (the saturation threshold) at the end.
    saturated[sci] = charge[sci] / gain[sci] >= 0.99 * FULL_WELL_LIN
    return {
        "rate_e": rate_e[sci].astype(np.float32),
        "rate_dn": rate_dn.astype(np.float32),
        "rate_l2": rate_l2.astype(np.float32),
        "dark_rate": det.dark_e[sci].astype(np.float32),
        "dark_dn": (det.dark_e / gain)[sci].astype(np.float32),
        "gain": gain[sci].astype(np.float32),
        "area_factor": area_factor.astype(np.float32),
        "flat": flat_used.astype(np.float32),
        "sky_rate": float(config.sky_rate),
        "sky_rate_l2": float(config.sky_rate * np.median(area_factor) / G_IDEAL),
        "jumps": np.array(jumps, dtype=np.float64).reshape(-1, 4),
        "jumps_columns": ["y", "x", "frame", "amplitude_e"],
        "saturated": saturated[sci],
        "bad_pixels": (det.bad[sci] != 0),
        "read_pattern": pattern,
        "frame_time": float(config.frame_time),
        "config": _plain_config(config),
        "note": (
            "science-area arrays (border removed); jumps y, x are full-frame; "
            "rate_l2 = rate_e / gain * area_factor / flat, what the pipeline returns"
        ),
    }


def simulate_exposure(config: SimulationConfig):
    """Simulate in memory; return ``(l1 arrays, calibration arrays, truth, header)``.

    Stages, in the order they draw from the seed's stream: the detector
    (`_detector`), its IPC kernel (`_ipc_kernel`), the scene (`_scene`), the frames
    read out into resultants and amp33 (`_read_frames`, from the noise seed's stream
    when one is given), then the calibration files (`_calibration`) and the truth
    (`_truth`).
    """
    from romanimpreprocess.datamodels.wcs import pixel_area_map
    from romanimpreprocess.simulate.field import photometry

    t_start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    n = config.size
    ns = n - 2 * REF_BORDER
    pattern = config.pattern
    det = _detector(config, rng)
    det.kernel = _ipc_kernel(config, rng, ns)
    header = wcs_header(config, ns)
    area = pixel_area_map(header, (ns, ns), offset=0)
    rate_e, total_e, n_sources, placed = _scene(config, rng, header, det)
    if config.noise_seed is not None:
        rng = np.random.default_rng(_noise_key(config))
    resultants, amp33, jumps, charge, amp33_med, amp33_std = _read_frames(
        config,
        pattern,
        total_e,
        det.gain,
        det.kernel,
        det.sref,
        det.beta,
        det.read_noise,
        rng,
        det.bad.shape,
    )
    sci = (slice(REF_BORDER, n - REF_BORDER),) * 2
    photom, photometry_truth = photometry(config, det.gain[sci], area)
    cal, flat_used = _calibration(config, det, pattern, amp33_med, amp33_std, photom)
    truth = _truth(
        config, det, pattern, rate_e, area / OMEGA_IDEAL, flat_used, charge, jumps
    )
    truth["photometry"] = photometry_truth
    if placed is not None:
        truth["sources"] = placed
    l1 = {"data": resultants, "amp33": amp33, "read_pattern": pattern}
    log.info(
        "Simulated %dx%d, %d resultants (%d frames) in %.1f s: %d sources, %d jumps",
        n,
        n,
        len(pattern),
        pattern[-1][-1] + 1,
        time.perf_counter() - t_start,
        n_sources,
        len(jumps),
    )
    return l1, cal, truth, header


def _plain_config(config):
    out = asdict(config)
    out["read_pattern"] = config.pattern
    if config.catalog is not None:
        out["catalog"] = f"{len(config.catalog)} sources (truth: sources)"
    return out


# ----------------------------------------------------------------- writing
def _check_directory(out_dir):
    out_dir = os.path.abspath(os.fspath(out_dir))
    parent = out_dir
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ValueError(f"out: directory {out_dir} cannot be created or written")
    if os.path.exists(out_dir) and not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"out: directory {out_dir} is not writable")
    return out_dir


def _l1_model(config, l1):
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.simulate.metadata import set_exposure_metadata

    nres, n, _ = l1["data"].shape
    raw = dm.ScienceRawModel.create_fake_data(shape=(nres, n, n))
    raw.data = l1["data"]
    raw.amp33 = l1["amp33"]
    # real times (start, end, ephemeris MJD) instead of the schema's placeholders
    set_exposure_metadata(
        raw.meta,
        read_pattern=l1["read_pattern"],
        frame_time=config.frame_time,
        ma_table_name=f"SIM_{config.read_pattern}",
    )
    raw.meta.instrument.detector = config.detector
    raw.meta.instrument.optical_element = config.optical_element
    if "data_encoding_offset" in raw.meta.instrument:
        raw.meta.instrument.data_encoding_offset = 0
    for key in ("xstart", "xstop", "ystart", "ystop"):
        raw.meta.guide_star[f"window_{key}"] = -1
    for key in ("reference_read", "reference_amp33", "resultantdq"):
        if key in raw:
            delattr(raw, key)
    return raw


def _write_tree(path, roman, compress=False):
    tree = {"roman": roman}
    kwargs = {"all_array_compression": "lz4"} if compress else {}
    asdf.AsdfFile(tree).write_to(path, **kwargs)


def write_simulation(
    out_dir, config: SimulationConfig | None = None
) -> SimulationPaths:
    """Simulate and write the L1, WCS header, calibration set, legacy YAML and truth."""
    import yaml

    config = config or SimulationConfig()
    out_dir = _check_directory(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    l1, cal, truth, header = simulate_exposure(config)
    timings["simulate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stem = f"sim_{config.detector}_{config.size}_s{config.seed}"
    if config.noise_seed is not None:
        stem += f"_n{config.noise_seed}"
    l1_path = os.path.join(out_dir, f"{stem}_uncal.asdf")
    raw = _l1_model(config, l1)
    raw.meta.photometry = truth["photometry"]["l1"]  # romanisim's convention
    raw.save(l1_path)
    wcs_path = os.path.join(out_dir, f"{stem}_uncal_asdf_wcshead.txt")
    # As the legacy sim_to_isim writes it: FITS cards (the legacy reads it with
    # Header.fromstring, without separators).
    header.tofile(wcs_path, overwrite=True)
    names = {
        "linearitylegendre": "linearitylegendre",
        "gain": "gain",
        "dark": "dark",
        "read": "read",
        "ipc4d": "ipc4d",
        "flat": "pflat",
        "biascorr": "biascorr",
        "saturation": "saturation",
        "mask": "mask",
        "dark_decay": "darkdecay",
    }
    caldir = {}
    jobs = []
    photom_path = os.path.join(out_dir, f"roman_wfi_photom_SIM_{config.detector}.asdf")
    from romanimpreprocess.simulate.field import write_photom

    write_photom(photom_path, cal.pop("photom"), config)
    caldir["photom"] = photom_path
    for key, roman in cal.items():
        path = os.path.join(
            out_dir, f"roman_wfi_{names[key]}_SIM_{config.detector}.asdf"
        )
        roman = dict(roman)
        roman["meta"] = {
            "instrument": {"detector": config.detector, "name": "WFI"},
            "reftype": key,
            "description": "romanimpreprocess simulation",
        }
        jobs.append((path, roman))
        caldir[key] = path
    truth_path = os.path.join(out_dir, f"{stem}_truth.asdf")
    from concurrent.futures import ThreadPoolExecutor

    # Files are independent: write them concurrently (I/O and lz4 release the GIL).
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_write_tree, path, roman) for path, roman in jobs]
        futures.append(
            pool.submit(
                lambda: asdf.AsdfFile(truth).write_to(
                    truth_path, all_array_compression="lz4"
                )
            )
        )
        for future in futures:
            future.result()
    out_path = os.path.join(out_dir, f"{stem}_cal.asdf")
    legacy = {
        "IN": l1_path,
        "OUT": out_path,
        "FITSWCS": wcs_path,
        "CALDIR": caldir,
        "RAMP_OPT_PARS": {"slope": 0.4, "gain": 1.8, "sigma_read": 6.5},
        "JUMP_DETECT_PARS": {
            "SthreshA": 5.5,
            "SthreshB": 4.5,
            "IthreshA": 1.0,
            "IthreshB": 1000.0,
        },
        "FITSOUT": False,
    }
    yaml_path = os.path.join(out_dir, f"{stem}.yaml")
    with open(yaml_path, "w") as f:
        yaml.safe_dump(legacy, f, sort_keys=False)
    timings["write_s"] = time.perf_counter() - t0
    return SimulationPaths(
        l1=l1_path,
        wcs_header=wcs_path,
        caldir=caldir,
        config_yaml=yaml_path,
        truth=truth_path,
        out=out_path,
        directory=out_dir,
        timings=timings,
    )
