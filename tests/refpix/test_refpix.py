"""Reference-pixel correction on simulated frames with known injected patterns."""

import numpy as np
import pytest

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.refpix.refpix import channel_step, correct_resultant, pink_alpha

B = REF_BORDER
NY, NX = 64, 128
CH = NX // N_CHANNELS


def channel_lines(rng, ny=NY, nx=NX, max_slope=2.0):
    """Per-channel offset + slope along rows (the drift the channel step removes)."""
    rows = np.arange(ny, dtype=np.float64)[:, None]
    off = np.repeat(rng.uniform(-300, 300, N_CHANNELS), CH)[None, :]
    slope = np.repeat(rng.uniform(-max_slope, max_slope, N_CHANNELS), CH)[None, :]
    return off + slope * rows


def test_channel_step_removes_lines_exactly(rng):
    lines = channel_lines(rng)
    extra = rng.uniform(-50, 50) + rng.uniform(-1, 1) * np.arange(NY)[:, None]
    work = np.zeros((NY, NX + AMP33_WIDTH), np.float32)
    work[:, :NX] = lines
    work[:, NX:] = extra
    edges = [*range(0, NX + 1, CH), NX + AMP33_WIDTH]
    channel_step(work, edges, B)
    assert np.abs(work).max() < 1e-3


def test_pink_alpha_closed_form():
    std = np.full((NY, AMP33_WIDTH), 3.0, np.float32)
    m, ru, c = 0.8, 2.0, 5.0
    white = 9.0 / AMP33_WIDTH / np.log(NY)
    expected = m * c**2 / (m**2 * c**2 + ru**2 + white)
    assert pink_alpha(m, ru, c, std, NY) == pytest.approx(expected, rel=1e-6)
    assert pink_alpha(0.0, 0.0, 0.0, std * 0, NY) is None


@pytest.mark.parametrize("alpha", [1.0, None])
def test_removes_common_mode_and_channel_offsets(rng, alpha):
    sigma = 2.0
    common = np.cumsum(rng.normal(0, 5, NY))  # red row noise, shared
    common -= common.mean()
    clean = rng.normal(0, sigma, (NY, NX))
    # The least-squares fallback (alpha None) regresses the row medians before the
    # channel step, so per-channel slopes would bias it: offsets only there.
    lines = channel_lines(rng, max_slope=2.0 if alpha else 0.0)
    frame = (clean + common[:, None] + lines + 10000).astype(np.float32)
    amp33 = (rng.normal(0, sigma, (NY, AMP33_WIDTH)) + common[:, None] + 5000).astype(
        np.float32
    )
    dark = rng.uniform(0, 1000, (NY, NX)).astype(np.float32)
    frame += dark
    applied = correct_resultant(
        frame, amp33, dark, amp33_median=None, alpha=alpha, border=B,
        block_width=AMP33_WIDTH,
    )  # fmt: skip
    assert applied == pytest.approx(1.0, abs=0.05)
    resid = frame - dark
    sci = resid[B:-B]
    # row pattern gone: row means scatter at the white-noise floor of the medians
    row_means = sci.mean(axis=1)
    assert np.std(row_means - row_means.mean()) < 4 * sigma / np.sqrt(AMP33_WIDTH)
    assert np.std(common) > 20 * sigma / np.sqrt(AMP33_WIDTH)
    # channel offsets gone to the reference-row noise floor (median of 4 x 4 pixels)
    chan = sci.reshape(NY - 2 * B, N_CHANNELS, CH).mean(axis=(0, 2))
    assert np.abs(chan).max() < 6 * sigma / np.sqrt(2 * B * CH) + 1.0
    # white noise preserved, not amplified
    assert np.std(sci) < 1.3 * sigma


def test_without_amp33_only_channel_step(rng):
    lines = channel_lines(rng).astype(np.float32)
    dark = rng.uniform(0, 100, (NY, NX)).astype(np.float32)
    frame = lines + dark
    applied = correct_resultant(
        frame, None, dark, amp33_median=None, alpha=None, border=B,
        block_width=AMP33_WIDTH,
    )  # fmt: skip
    assert applied is None
    assert np.abs(frame - dark).max() < 1e-2


@pytest.mark.parametrize("row_step", [True, False])
def test_compiled_terms_have_numpys_bits(rng, row_step):
    """The compiled one-pass application against the numpy passes (the definition),
    bit for bit, on rows of a larger frame (the band path) and on the whole frame,
    with large and small values so that every rounding to float32 matters."""
    from romanimpreprocess.refpix.refpix import ResultantTerms, apply_terms

    ny, nx = 96, 256
    edges = list(range(0, nx + 1, nx // N_CHANNELS))
    lines = [
        (np.float64(s), np.float64(o))
        for s, o in zip(
            rng.normal(0, 0.37, N_CHANNELS), rng.normal(0, 900, N_CHANNELS), strict=True
        )
    ]
    correction = rng.normal(0, 3.3, ny) if row_step else None
    terms = ResultantTerms(correction=correction, lines=lines, edges=edges, ny=ny)
    frame = (rng.uniform(0, 65535, (ny, nx)) * rng.uniform(0, 1, (ny, nx))).astype(
        np.float32
    )
    dark = rng.normal(200, 150, (ny, nx)).astype(np.float32)
    for rows in (slice(0, ny), slice(17, 61)):
        expected = frame[rows].copy()
        apply_terms(expected, dark[rows], terms, rows, engine="numpy")
        got = frame[rows].copy()
        apply_terms(got, dark[rows], terms, rows)
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
        assert not np.array_equal(got, frame[rows])  # something was subtracted
