"""Stars of bench_mosaic.py whose coadd flux differs from both L2s: outlier flags.

Usage::

    python bench/mosaic_clipping.py OUT [--weight-type exptime] [--scale "1.2 0.7"]

``OUT`` is a ``bench_mosaic.py --out`` directory after its mosaic phase with the same
weight type (it reads ``stars_<weight type>.npy``). Runs the steps of romancal's
``MosaicPipeline`` one by one with the settings of bench_mosaic.py (flux, skymatch,
outlier_detection, resample; ``--snr`` / ``--scale`` go to outlier_detection), keeps
each L2's OUTLIER flags, and for every precise star of the stars file measures:

* the coadd's aperture flux over the catalogue flux (bench_mosaic.aperture_flux);
* each L2's aperture flux over the catalogue flux (same aperture and annulus, the
  L2's ``meta.photometry.pixel_area``);
* the number of OUTLIER pixels in each L2's aperture, and whether one is within
  2 px of the star;
* the coadd's pixel solid angle at the star (from its WCS) over the one used,
  ``radians(wcsinfo.pixel_scale)**2``.

Prints a JSON summary (written to ``OUT/clipping_<tag>.json``, the per-star table to
``OUT/clipping_<tag>.npy``).
"""

import argparse
import glob
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_mosaic import APERTURE, aperture_flux, forbid_crds

COLUMNS = (
    "catalogue index, catalogue uJy, coadd/true, L2 0/true, L2 1/true, "
    "OUTLIER px in aperture L2 0, L2 1, OUTLIER within 2 px L2 0, L2 1, "
    "true/used coadd pixel area"
)


def _outlier_counts(dq, x, y):
    """OUTLIER pixels of ``dq`` within the aperture and within 2 px of (x, y)."""
    from roman_datamodels.dqflags import pixel

    ny, nx = dq.shape
    half = int(APERTURE) + 1
    ix, iy = int(np.rint(x)), int(np.rint(y))
    if not (half <= ix < nx - half and half <= iy < ny - half):
        return np.nan, np.nan
    cut = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
    cy, cx = np.mgrid[cut]
    r = np.hypot(cx - x, cy - y)
    flagged = (dq[cut] & pixel.OUTLIER) != 0
    return int(np.sum(flagged & (r <= APERTURE))), int(np.sum(flagged & (r <= 2)))


def _pixel_area_ratio(wcs, x, y, used_sr):
    """Solid angle of the coadd pixel at (x, y) from its WCS, over ``used_sr``."""
    ra, dec = wcs([x - 0.5, x + 0.5, x, x], [y, y, y - 0.5, y + 0.5])
    ra, dec = np.radians(ra), np.radians(dec)
    cosd = math.cos(dec.mean())
    along_x = ((ra[1] - ra[0]) * cosd, dec[1] - dec[0])
    along_y = ((ra[3] - ra[2]) * cosd, dec[3] - dec[2])
    return abs(along_x[0] * along_y[1] - along_x[1] * along_y[0]) / used_sr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--weight-type", default="exptime")
    parser.add_argument("--snr", default="5.0 4.0")
    parser.add_argument("--scale", default="1.2 0.7")
    parser.add_argument(
        "--skip-outlier-detection", action="store_true", help="as bench_mosaic --skip"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "true")
    from romancal.datamodels.fileio import open_dataset
    from romancal.flux import FluxStep
    from romancal.outlier_detection import OutlierDetectionStep
    from romancal.resample import ResampleStep
    from romancal.skymatch import SkyMatchStep

    from romanimpreprocess.simulate.field import SourceCatalog

    forbid_crds()
    out = os.path.abspath(args.out)
    l2_paths = sorted(glob.glob(os.path.join(out, "exp*", "*_cal.asdf")))
    library = open_dataset(l2_paths, as_library=True, open_kwargs={"on_disk": False})
    library = FluxStep.call(library)
    library = SkyMatchStep.call(library)
    if not args.skip_outlier_detection:
        library = OutlierDetectionStep.call(
            library,
            weight_type=args.weight_type,
            resample_on_skycell=False,
            snr=args.snr,
            scale=args.scale,
        )
    exposures = []
    with library:
        for index, model in enumerate(library):
            exposures.append(
                {
                    "data": np.array(model.data, np.float64),
                    "err": np.array(model.err, np.float64),
                    "dq": np.array(model.dq),
                    "wcs": model.meta.wcs,
                    "pixel_sr": float(model.meta.photometry.pixel_area),
                }
            )
            library.shelve(model, index, modify=False)
    coadd = ResampleStep.call(
        library, weight_type=args.weight_type, resample_on_skycell=False
    )
    data = np.asarray(coadd.data, np.float64)
    err = np.asarray(coadd.err, np.float64)
    pixel_sr = math.radians(coadd.meta.wcsinfo.pixel_scale) ** 2
    catalog = SourceCatalog.read(os.path.join(out, "catalog.asdf"))
    stars = np.load(os.path.join(out, f"stars_{args.weight_type}.npy"))
    precise = stars[stars[:, 2] < 0.02 / 3 * stars[:, 0]]
    index = precise[:, 5].astype(int)
    ra, dec = catalog.ra[index], catalog.dec[index]
    # positions of all stars at once: gwcs inverts one point as slowly as thousands
    positions = [coadd.meta.wcs.invert(ra, dec, with_bounding_box=False)]
    positions += [e["wcs"].invert(ra, dec, with_bounding_box=False) for e in exposures]
    positions = [(np.asarray(x, float), np.asarray(y, float)) for x, y in positions]
    rows = []
    for k, (i, true) in enumerate(zip(index, precise[:, 0], strict=True)):
        x, y = positions[0][0][k], positions[0][1][k]
        measured = aperture_flux(data, err, x, y, pixel_sr)
        row = [i, true, measured[0] / true if measured else np.nan]
        counts = []
        for exposure, (ex, ey) in zip(exposures, positions[1:], strict=True):
            l2 = aperture_flux(
                exposure["data"], exposure["err"], ex[k], ey[k], exposure["pixel_sr"]
            )
            row.append(l2[0] / true if l2 else np.nan)
            counts.append(_outlier_counts(exposure["dq"], ex[k], ey[k]))
        row += [c[0] for c in counts] + [c[1] for c in counts]
        row.append(_pixel_area_ratio(coadd.meta.wcs, x, y, pixel_sr))
        rows.append(row)
    rows = np.array(rows, np.float64)
    tag = args.weight_type + (
        "_no_outlier_detection"
        if args.skip_outlier_detection
        else f"_snr{args.snr.replace(' ', '_')}_scale{args.scale.replace(' ', '_')}"
    )
    np.save(os.path.join(out, f"clipping_{tag}.npy"), rows)
    result = {"columns": COLUMNS, "precise stars": len(rows)}
    coadd_ratio = rows[:, 2]
    l2_ok = np.all(np.abs(rows[:, 3:5] - 1) < 0.005, axis=1)
    clipped = np.nansum(rows[:, 5:7], axis=1) > 0
    core = np.nansum(rows[:, 7:9], axis=1) > 0
    for label, keep in (
        ("all", np.isfinite(coadd_ratio)),
        ("coadd off > 2 %", np.abs(coadd_ratio - 1) > 0.02),
        (
            "coadd off > 2 %, both L2 within 0.5 %",
            (np.abs(coadd_ratio - 1) > 0.02) & l2_ok,
        ),
        ("coadd within 2 %", np.abs(coadd_ratio - 1) <= 0.02),
    ):
        part = rows[keep]
        result[label] = {
            "stars": int(keep.sum()),
            "median coadd/true": float(np.nanmedian(part[:, 2])),
            "median L2/true": [float(np.nanmedian(part[:, k])) for k in (3, 4)],
            "with OUTLIER px in an L2 aperture": float(np.mean(clipped[keep])),
            "with OUTLIER px within 2 px": float(np.mean(core[keep])),
            "median OUTLIER px per aperture (both L2)": float(
                np.nanmedian(np.nansum(part[:, 5:7], axis=1))
            ),
        }
    for label, keep in (
        ("stars with OUTLIER px within 2 px", core),
        ("without", ~core),
    ):
        part = rows[keep]
        result[label] = {
            "stars": int(keep.sum()),
            "median coadd/true": float(np.nanmedian(part[:, 2])),
            "coadd off > 2 %": float(np.mean(np.abs(part[:, 2] - 1) > 0.02)),
        }
    result["true/used coadd pixel area (min, max)"] = [
        float(np.nanmin(rows[:, 9])),
        float(np.nanmax(rows[:, 9])),
    ]
    with open(os.path.join(out, f"clipping_{tag}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
