"""Reference-pixel correction step."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.constants import (
    N_CHANNELS,
    REF_BORDER,
    REFPIX_ROW_VARIANCE_KEY,
)
from romanimpreprocess.parallel import run_in_threads
from romanimpreprocess.refpix import refpix
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan, is_placeholder
from romanimpreprocess.utils.mapped import release_pages
from romanimpreprocess.utils.pink import row_clocks

__all__ = ["RefPixStep"]

log = logging.getLogger(__name__)


class RefPixStep(RipStep):
    """Remove 1/f row noise (amp33 regression) and channel drifts (reference rows).

    The dark cube is subtracted before the medians and added back. With a read-noise
    file whose ``amp33`` model is missing or invalid the row step is skipped (the
    legacy crashed or produced NaN, docs/refpix/description.rst, differences from the legacy). The dark plane
    is aligned with the resultant (``de = n_dark - n``; ``legacy_compat`` uses plane
    ``j`` as the legacy, docs/refpix/description.rst, differences from the legacy).
    """

    class_alias = "rip_refpix"
    cal_step_key = "refpix"
    spec = """
        row_step = boolean(default=True)  # amp33 row regression (1/f common mode)
        legacy_compat = boolean(default=False)  # dark plane j instead of j + de (legacy)
        suffix = string(default="refpix")  # output file suffix
    """
    reference_file_types: ClassVar = ["dark", "readnoise"]

    def process(self, dataset):
        """Return the reference-pixel corrected `RampModel`."""
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The correction terms of every resultant, to apply band by band.

        The row step and the channel lines come from the amp33 block and the
        reference rows alone (`refpix.resultant_terms`), so a band needs no halo.
        The spread of the reference rows and the row variance handed to the ramp fit
        are computed here too.
        """
        dark = self.load_reference(model, "dark", fields=["data"]).data
        read = self.load_reference(model, "readnoise", fields=["data", "amp33", "anc"])
        n, ny, _ = model.data.shape
        offset = 0 if self.legacy_compat else dark.shape[0] - n
        amp33_model = read.get("amp33") if self.row_step else None
        alpha = None
        amp33_median = None
        use_rows = False
        if amp33_model is not None and amp33_model.get("valid", True) is not False:
            anc = read.get("anc") or {}
            std = np.asarray(amp33_model["std"], dtype=np.float32)
            alpha = refpix.pink_alpha(
                float(amp33_model["M_PINK"]),
                float(amp33_model["RU_PINK"]),
                float(anc.get("C_PINK", 0.0)),
                std,
                ny,
            )
            amp33_median = np.asarray(amp33_model["med"], dtype=np.float32)
            use_rows = alpha is not None
            if alpha is None:
                log.warning("refpix: amp33 model gives no usable alpha; no row step")
        elif self.row_step:
            log.warning(
                "refpix: no valid amp33 model in %s; channel step only", read.path
            )
        log.info(
            "refpix: %d resultants, row step %s (alpha %s), dark planes %d..%d",
            n,
            "on" if use_rows else "off",
            "n/a" if alpha is None else f"{alpha:.6g}",
            offset,
            offset + n - 1,
        )
        held = np.r_[0:REF_BORDER, ny - REF_BORDER : ny]

        planes = [None] * n

        def terms(j):
            plane = dark[offset + j]
            dark_rows = np.asarray(plane[held], dtype=np.float32)
            release_pages(plane)  # only the reference rows were read
            planes[j] = refpix.resultant_terms(
                _reference_rows(model, j),
                dark_rows,
                model.amp33[j] if use_rows else None,
                ny=ny,
                amp33_median=amp33_median,
                alpha=alpha,
                border=REF_BORDER,
            )

        # The medians run without the GIL: resultants in threads.
        run_in_threads(terms, range(n))
        # The spread of the reference pixels before the correction (reset offsets),
        # for the noise the correction leaves (default mode only).
        offsets = None if self.legacy_compat else self._reset_spread(model, dark, read)
        if offsets is not None:
            # For the ramp fit's var_rnoise (taken out of processinfo there).
            self.processinfo(model)[REFPIX_ROW_VARIANCE_KEY] = self._row_variance(
                model,
                read,
                offsets,
                alpha if use_rows else None,
                amp33_model if use_rows else None,
            )
        return _RefPixPlan(step=self, dark=dark, offset=offset, terms=planes)

    def _reset_spread(self, model, dark, read):
        """Spread (DN) of the fixed offsets of each channel's reference rows.

        ``(2, nchannels)``: bottom and top rows (the median over the channels of each
        row of channels). From the first resultant used
        after the reset, minus its dark plane: the robust variance of a channel's
        reference pixels less their white read noise and rounding (``σ²/N + 1/12``)
        and less the 1/f noise's spread over the block is the spread of the reset offsets the medians see (what the read-noise
        file's ``resetnoise`` describes, measured on the exposure itself).
        """
        n, ny, nx = model.data.shape
        b = REF_BORDER
        width = nx // N_CHANNELS
        k = 1 if n > 1 else 0
        n_frames = len(model.meta.exposure.read_pattern[k])
        plane = dark.shape[0] - n + k if not self.legacy_compat else k
        out = np.zeros((2, N_CHANNELS))
        # The 1/f noise of the read-noise file also spreads a block (within a frame):
        # noise, not offsets (refpix.pink_block_variance).
        anc = dict(read.get("anc") or {})
        pink2 = (
            float(anc.get("C_PINK", 0.0) or 0.0) ** 2
            + float(anc.get("U_PINK", 0.0) or 0.0) ** 2
        )
        if pink2:
            clocks = row_clocks(width, model.amp33.shape[-1])
            pink2 *= refpix.pink_block_variance(b, width, clocks) / n_frames
        reference = _reference_rows(model, k)
        for side, rows in enumerate((slice(0, b), slice(ny - b, ny))):
            held = reference[side * b : (side + 1) * b]
            values = np.asarray(held, np.float64) - np.asarray(
                dark[plane, rows], np.float64
            )
            white = np.asarray(read.data[rows], np.float64) ** 2 / n_frames + 1 / 12
            blocks = values.reshape(b, N_CHANNELS, width).transpose(1, 0, 2)
            q25, q75 = np.nanpercentile(
                blocks.reshape(N_CHANNELS, -1), [25, 75], axis=1
            )
            spread = ((q75 - q25) / 1.3489795) ** 2
            white = np.nanmedian(
                white.reshape(b, N_CHANNELS, width)
                .transpose(1, 0, 2)
                .reshape(N_CHANNELS, -1),
                axis=1,
            )
            # One value for the row of channels: a channel's 4 x 32 ... 4 x 128 pixels
            # give its spread to 10-25 %; the offsets are a property of the pixels.
            out[side] = np.sqrt(max(float(np.nanmedian(spread - white)) - pink2, 0.0))
        return out

    @staticmethod
    def _row_variance(model, read, offsets, alpha, amp33_model):
        """`refpix.residual_row_variance` of this exposure (float32 array)."""
        ny, nx = model.data.shape[1:]
        width = nx // N_CHANNELS
        b = REF_BORDER

        def per_channel(rows):
            values = np.asarray(read.data[rows], dtype=np.float64) ** 2
            return np.nanmedian(values.reshape(b, N_CHANNELS, width), axis=(0, 2))

        read_var = np.array([per_channel(slice(0, b)), per_channel(slice(ny - b, ny))])
        anc = dict(read.get("anc") or {})
        pink = {"C_PINK": anc.get("C_PINK", 0.0), "U_PINK": anc.get("U_PINK", 0.0)}
        amp33_var = 0.0
        if amp33_model is not None:
            pink["M_PINK"] = amp33_model.get("M_PINK", 0.0)
            pink["RU_PINK"] = amp33_model.get("RU_PINK", 0.0)
            amp33_var = float(np.median(np.asarray(amp33_model["std"])) ** 2)
        n_frames = [len(r) for r in model.meta.exposure.read_pattern]
        return refpix.residual_row_variance(
            n_frames,
            ny,
            read_var,
            offsets,
            border=b,
            channel_width=width,
            pink=pink,
            alpha=alpha,
            amp33_white_var=amp33_var,
            amp33_width=model.amp33.shape[-1],
        )


def _reference_rows(model, j):
    """Bottom then top reference rows of resultant ``j`` (2 border, nx).

    From the cube, or, when the pipeline runs in row bands (the cube is a
    placeholder), from the decoded border copies: the steps before refpix do not
    change the data.
    """
    b = REF_BORDER
    if is_placeholder(model.data):
        return np.concatenate(
            [model.border_ref_pix_bottom[j], model.border_ref_pix_top[j]]
        )
    ny = model.data.shape[1]
    return model.data[j][np.r_[0:b, ny - b : ny]]


class _RefPixPlan(BandPlan):
    def __init__(self, step, dark, offset, terms):
        super().__init__()
        self.step = step
        self.dark = dark
        self.offset = offset
        self.terms = terms

    def apply(self, band):
        rows = band.rows

        def correct(j):
            dark = self.dark[self.offset + j][rows]
            refpix.apply_terms(
                band.data[j], np.asarray(dark, dtype=np.float32), self.terms[j], rows
            )
            # The dark rows are not needed again: their mapped pages leave the
            # process now (a 24-resultant dark cube is 1.6 GiB: kept, it set the
            # run's peak, bench/RESULTS.md).
            release_pages(dark)

        # Resultants are corrected independently (in place), in threads: the
        # array arithmetic runs without the GIL. Same bits as one at a time.
        run_in_threads(correct, range(band.data.shape[0]))

    def finish(self, model):
        self.step.record_cal_step(model, "COMPLETE")
        return model
