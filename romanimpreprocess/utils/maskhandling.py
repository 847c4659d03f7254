"""Bad-pixel masks from L2 data-quality flags, and the mask file of an L2 product.

A `CombinedMask` maps flags to a growth footprint: a pixel is masked when one of the
flags is set on it or, for footprints larger than 1, on a neighbour inside the
footprint. Footprints are given by their pixel count:

* 1: the pixel itself;
* 5: the pixel and its four nearest neighbours (a cross);
* 9: the 3x3 block around it;
* 25: the 5x5 block around it.

`PixelMask1` is the mask used everywhere in this package (the sky estimate, the
``MASKED`` plane of the FITS copy and the ``_mask.fits`` file): the same flags and
footprints as the legacy 1.0.0 ``PixelMask1``.

The mask file (`CombinedMask.convert_file`, the ``rip-mask`` command, the pipeline
parameter ``mask_output`` / legacy key ``MASKOUT``) is, for a ``.fits`` name, HDU 0 the
float32 science image with masked pixels set to `MASKED_VALUE` (-1000.0) and HDU 1 an
int8 image (1 = masked) named ``MASK``; for an ``.asdf`` name, a tree
``{"mask": bool array}``.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import REF_BORDER

__all__ = [
    "FOOTPRINTS",
    "MASKED_VALUE",
    "PIXEL_MASK1",
    "CombinedMask",
    "PixelMask1",
    "fits_mask_hdus",
    "full_frame_dq",
    "main",
    "mask_path_for",
    "pixel_mask1",
]

MASKED_VALUE = -1000.0  # value of masked pixels in HDU 0 of a FITS mask file
FOOTPRINTS = (1, 5, 9, 25)
_BORDER_SIDES = ("left", "right", "bottom", "top")

# flag -> footprint; the flags and growths of the legacy PixelMask1
PIXEL_MASK1 = {
    "DO_NOT_USE": 1,
    "JUMP_DET": 5,
    "DROPOUT": 25,
    "GW_AFFECTED_DATA": 1,
    "PERSISTENCE": 1,
    "AD_FLOOR": 5,
    "UNRELIABLE_ERROR": 1,
    "NON_SCIENCE": 1,
    "DEAD": 9,
    "HOT": 9,
    "WARM": 1,
    "LOW_QE": 9,
    "TELEGRAPH": 1,
    "NO_FLAT_FIELD": 9,
    "NO_GAIN_VALUE": 9,
    "NO_LIN_CORR": 9,
    "NO_SAT_CHECK": 9,
    "UNRELIABLE_BIAS": 1,
    "UNRELIABLE_DARK": 9,
    "UNRELIABLE_SLOPE": 9,
    "UNRELIABLE_FLAT": 9,
    "UNRELIABLE_RESET": 9,
    "OTHER_BAD_PIXEL": 9,
}


def _offsets(footprint):
    if footprint == 5:
        return [(-1, 0), (1, 0), (0, -1), (0, 1)]
    r = {9: 1, 25: 2}[footprint]
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if (dy, dx) != (0, 0)
    ]


def _grow(mask, footprint):
    """``mask`` OR-ed with its shifts over the footprint (nothing from outside)."""
    if footprint == 1 or not mask.any():
        return mask
    out = mask.copy()
    ny, nx = mask.shape
    for dy, dx in _offsets(footprint):
        src_y = slice(max(dy, 0), ny + min(dy, 0))
        dst_y = slice(max(-dy, 0), ny + min(-dy, 0))
        src_x = slice(max(dx, 0), nx + min(dx, 0))
        dst_x = slice(max(-dx, 0), nx + min(-dx, 0))
        out[dst_y, dst_x] |= mask[src_y, src_x]
    return out


def _bit_of(key):
    """The dq bit value of a flag name (any case) or bit number 0..31."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if not 0 <= int(key) < 32:
            raise ValueError(f"mask flag {key!r}: bit numbers run from 0 to 31")
        return 1 << int(key)
    if isinstance(key, str):
        name = key.strip().upper()
        if name not in pixel.__members__:
            raise ValueError(
                f"mask flag {key!r}: not a roman_datamodels pixel flag (known: "
                f"{', '.join(pixel.__members__)})"
            )
        value = int(pixel[name])
        if value == 0:
            raise ValueError(f"mask flag {key!r} has no bit (GOOD)")
        return value
    raise ValueError(f"mask flag {key!r}: give a flag name or a bit number")


class CombinedMask:
    """A boolean mask from several dq flags, each grown by its own footprint.

    Parameters
    ----------
    maskdict : dict
        ``{flag: footprint}``; a flag is a `roman_datamodels.dqflags.pixel` name (any
        case, e.g. ``"jump_det"``) or a bit number 0..31; a footprint is 1, 5, 9 or 25
        (see the module docstring). Every bad entry is reported at once.

    Examples
    --------
    Mask pixels with GW_AFFECTED_DATA, and JUMP_DET pixels with their four
    neighbours::

        mask = CombinedMask({"gw_affected_data": 1, "jump_det": 5}).build(dq)
    """

    def __init__(self, maskdict):
        if not isinstance(maskdict, dict) or not maskdict:
            raise ValueError(
                f"CombinedMask: expected a non-empty dict {{flag: footprint}}, got "
                f"{maskdict!r}"
            )
        bits = dict.fromkeys(FOOTPRINTS, 0)
        problems = []
        for key, footprint in maskdict.items():
            try:
                bit = _bit_of(key)
            except ValueError as err:
                problems.append(str(err))
                continue
            if isinstance(footprint, bool) or footprint not in FOOTPRINTS:
                problems.append(
                    f"mask flag {key!r}: footprint must be 1, 5, 9 or 25, got "
                    f"{footprint!r}"
                )
                continue
            bits[int(footprint)] |= bit
        if problems:
            raise ValueError("CombinedMask: " + "; ".join(problems))
        self.maskdict = dict(maskdict)
        # footprint -> OR of the flag bits grown by it
        self.bits = {k: v for k, v in bits.items() if v}

    def __repr__(self):
        return f"CombinedMask({self.maskdict!r})"

    def build(self, dq: NDArray) -> NDArray[np.bool_]:
        """The mask of a 2-D dq array: True where masked."""
        dq = np.asarray(dq)
        if dq.ndim != 2 or dq.dtype.kind not in "ui":
            raise ValueError(
                f"dq: expected a 2-D integer array, got {dq.dtype} of shape {dq.shape}"
            )
        dq = dq.astype(np.uint32, copy=False)
        mask = np.zeros(dq.shape, dtype=bool)
        for footprint, bits in self.bits.items():
            mask |= _grow((dq & np.uint32(bits)) != 0, footprint)
        return mask

    def build_science(self, dq: NDArray, borders: dict | None = None):
        """Mask of the science area, flags of the reference border included.

        ``dq`` is the science-area dq of an L2 product and ``borders`` its
        ``dq_border_ref_pix_<side>`` arrays (any missing: no flags there): the flags
        are grown on the full frame, so a flagged border pixel masks its neighbours
        inside the science area, as the legacy full-frame mask did.
        """
        if not borders:
            return self.build(dq)
        b = REF_BORDER
        return self.build(full_frame_dq(dq, borders))[b:-b, b:-b]

    def convert_file(self, file_in, file_mask):
        """Write the mask file of the L2 file ``file_in`` to ``file_mask``.

        ``file_mask`` ending in ``.fits``: HDU 0 float32 data with masked pixels at
        `MASKED_VALUE`, HDU 1 int8 (1 = masked) with EXTNAME ``MASK``. Ending in
        ``.asdf``: a tree ``{"mask": bool array}``. Written to a temporary file and
        renamed. Returns the path written.
        """
        file_in, file_mask = os.fspath(file_in), os.fspath(file_mask)
        kind = _mask_kind(file_mask)
        data, dq, borders = _read_l2(file_in)
        mask = self.build_science(dq, borders)
        if kind == "fits":
            _write_fits_mask(np.asarray(data, dtype=np.float32), mask, file_mask)
        else:
            _write_asdf_mask(mask, file_mask)
        return file_mask


def _mask_kind(path):
    if path.endswith(".fits"):
        return "fits"
    if path.endswith(".asdf"):
        return "asdf"
    raise ValueError(f"mask file {path}: the name must end in .fits or .asdf")


def full_frame_dq(dq: NDArray, borders: dict) -> NDArray[np.uint32]:
    """The science-area ``dq`` re-embedded in the frame, the border dq around it.

    ``borders`` maps ``dq_border_ref_pix_<left|right|bottom|top>`` (or just the side
    names) to the border arrays of an L2 product; missing or misshapen ones are zero.
    """
    b = REF_BORDER
    ny, nx = np.shape(dq)
    full = np.zeros((ny + 2 * b, nx + 2 * b), dtype=np.uint32)
    full[b:-b, b:-b] = dq
    for side, index in zip(
        _BORDER_SIDES,
        (
            (slice(None), slice(0, b)),
            (slice(None), slice(-b, None)),
            (slice(0, b), slice(None)),
            (slice(-b, None), slice(None)),
        ),
        strict=True,
    ):
        value = borders.get(f"dq_border_ref_pix_{side}", borders.get(side))
        if value is not None and np.shape(value) == full[index].shape:
            full[index] |= np.asarray(value, dtype=np.uint32)
    return full


def _read_l2(path):
    """``(data, dq, borders)`` of an L2 ASDF file, with a clear error if it is not."""
    import asdf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"L2 file {path}: no such file")
    try:
        af = asdf.open(path, lazy_load=False, memmap=False)
    except Exception as err:
        raise ValueError(f"L2 file {path}: not a readable ASDF file ({err})") from err
    with af:
        roman = af.tree.get("roman")
        missing = [k for k in ("data", "dq") if roman is None or k not in roman]
        if missing:
            raise ValueError(
                f"L2 file {path}: no roman.{' or roman.'.join(missing)} (not an L2 "
                "product)"
            )
        data = np.array(roman["data"], dtype=np.float32)
        dq = np.array(roman["dq"])
        if data.ndim != 2 or dq.shape != data.shape:
            raise ValueError(
                f"L2 file {path}: data {data.shape} and dq {dq.shape} are not one 2-D "
                "shape"
            )
        borders = {}
        for side in _BORDER_SIDES:
            key = f"dq_border_ref_pix_{side}"
            if key in roman:
                borders[key] = np.array(roman[key])
    return data, dq, borders


def _temporary_next_to(path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=".tmp-" + os.path.basename(path) + "-", dir=directory
    )
    os.close(fd)
    return tmp


def _replace(writer, path):
    """Run ``writer(tmp)`` on a temporary file next to ``path``; rename it."""
    tmp = _temporary_next_to(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fits_mask_hdus(data: NDArray, mask: NDArray[np.bool_]):
    """The two HDUs of a FITS mask file (HDU 0 masked image, HDU 1 ``MASK``)."""
    from astropy.io import fits

    image = np.where(mask, np.float32(MASKED_VALUE), data).astype(np.float32)
    flags = fits.ImageHDU(mask.astype(np.int8), name="MASK")
    return fits.HDUList([fits.PrimaryHDU(image), flags])


def _write_fits_mask(data, mask, path):
    hdus = fits_mask_hdus(data, mask)
    _replace(lambda tmp: hdus.writeto(tmp, overwrite=True), path)


def _write_asdf_mask(mask, path):
    import asdf

    tree = {"mask": np.asarray(mask, dtype=bool)}
    _replace(lambda tmp: asdf.AsdfFile(tree).write_to(tmp), path)


PixelMask1 = CombinedMask(PIXEL_MASK1)


def pixel_mask1(dq: NDArray) -> NDArray[np.bool_]:
    """`PixelMask1` of a 2-D dq array (True where masked)."""
    return PixelMask1.build(dq)


def mask_path_for(l2_path):
    """Default mask file of an L2 file: ``<stem>_mask.fits`` (the survey naming)."""
    path = os.fspath(l2_path)
    return path.removesuffix(".asdf") + "_mask.fits"


def main(argv=None):
    """Command line ``rip-mask L2.asdf [MASK.fits|MASK.asdf]`` (PixelMask1)."""
    parser = argparse.ArgumentParser(
        prog="rip-mask",
        description=(
            "Write the PixelMask1 mask file of an L2 product: .fits (HDU 0 image with "
            "masked pixels at -1000, HDU 1 int8 MASK) or .asdf ({'mask': bool})."
        ),
    )
    parser.add_argument("l2", help="L2 ASDF file")
    parser.add_argument(
        "mask", nargs="?", help="output mask file (default: <L2 stem>_mask.fits)"
    )
    args = parser.parse_args(argv)
    out = args.mask or mask_path_for(args.l2)
    try:
        PixelMask1.convert_file(args.l2, out)
    except (ValueError, OSError) as err:
        sys.stderr.write(f"rip-mask: {err}\n")
        return 1
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import exit_now, start_cli

    start_cli()
    exit_now(main())
