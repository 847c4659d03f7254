"""Full-frame dithered exposures -> our pipeline -> romancal 1.1.0 MosaicPipeline.

Usage::

    python bench/bench_mosaic.py [--size 4096] [--count 2] [--out bench/out/mosaic]

``--phase pipeline`` starts at 2. on the exposures already simulated in ``--out``;
``--phase mosaic`` runs only 3.

1. ``rip-simulate --dithers COUNT`` (one field, same detector, own noise, one
   catalogue in µJy), under ``/usr/bin/time -v``;
2. our pipeline (``gen_cal_image``, SKYORDER 0) on each exposure, under
   ``/usr/bin/time -v``;
3. romancal's ``MosaicPipeline`` (``resample_on_skycell=False``, source catalogue
   skipped, ``STPIPE_DISABLE_CRDS_STEPPARS=true``, every CRDS call made to fail), then
   the checks against the catalogue, in a child process under ``/usr/bin/time -v``:
   the coadd is finite over the overlap of all exposures (computed from their own
   WCS, every 8th mosaic pixel), and aperture fluxes (r = 6 px, background from the
   9-14 px annulus) of isolated stars (no other source within 15 px), converted with
   the coadd's pixel area, against the catalogue fluxes.

Prints a markdown block and writes ``results.json`` in ``--out``.
"""

import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

APERTURE, ANNULUS, ISOLATION = 6.0, (9.0, 14.0), 15.0


def _timed(cmd, cwd=None, env=None):
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
    )
    wall = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    if proc.returncode:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    return {
        "wall_s": round(wall, 1),
        "user_s": float(user.group(1)) if user else None,
        "sys_s": float(system.group(1)) if system else None,
        "peak_rss_gib": round(int(rss.group(1)) / 2**20, 2) if rss else None,
        "output": text,
    }


def forbid_crds():
    """Make every CRDS look-up fail, so that a run that needs one says so."""
    import crds
    import stpipe.crds_client

    def no_crds(*args, **kwargs):
        raise RuntimeError("CRDS was called")

    crds.getreferences = no_crds
    stpipe.crds_client.get_reference_file = no_crds


def aperture_flux(data, err, x, y, pixel_sr):
    """``(flux, sigma)`` in µJy of the source at ``(x, y)``, or None near an edge.

    Aperture ``APERTURE`` px minus the median of the ``ANNULUS``; ``data`` and
    ``err`` in MJy/sr, ``pixel_sr`` the pixel solid angle. None when the aperture has
    a non-finite pixel or the annulus fewer than 50 finite ones.
    """
    ny, nx = data.shape
    half = int(ANNULUS[1]) + 2
    ix, iy = int(np.rint(x)), int(np.rint(y))
    if not (half <= ix < nx - half and half <= iy < ny - half):
        return None
    cut = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
    cy, cx = np.mgrid[cut]
    r = np.hypot(cx - x, cy - y)
    inside = r <= APERTURE
    ring = (r >= ANNULUS[0]) & (r <= ANNULUS[1])
    values = data[cut]
    if not np.isfinite(values[inside]).all() or np.isfinite(values[ring]).sum() < 50:
        return None
    background = np.nanmedian(values[ring])
    flux = np.sum(values[inside] - background) * pixel_sr * 1e12
    sigma = math.sqrt(np.sum(err[cut][inside] ** 2)) * pixel_sr * 1e12
    return flux, sigma


def _mosaic_phase(out, weight_type="ivm", skip=()):
    """Run the MosaicPipeline and the checks (in a child process); write JSON."""
    import roman_datamodels as rdm
    from romancal.pipeline import MosaicPipeline

    from romanimpreprocess.simulate.field import SourceCatalog

    forbid_crds()
    l2_paths = sorted(glob.glob(os.path.join(out, "exp*", "*_cal.asdf")))
    t0 = time.perf_counter()
    pipe = MosaicPipeline()
    pipe.resample_on_skycell = False
    pipe.source_catalog.skip = True
    pipe.resample.weight_type = weight_type
    pipe.outlier_detection.weight_type = weight_type
    for name in skip:
        getattr(pipe, name).skip = True
    tag = weight_type + "".join(f"_no_{name}" for name in skip)
    coadd, _, _ = pipe.run(l2_paths)
    t_mosaic = time.perf_counter() - t0
    data = np.asarray(coadd.data, dtype=np.float64)
    err = np.asarray(coadd.err, dtype=np.float64)
    ny, nx = data.shape

    # overlap of every exposure, from their own WCS (every 8th coadd pixel)
    yy, xx = np.mgrid[0:ny:8, 0:nx:8]
    ra, dec = coadd.meta.wcs(xx, yy)
    overlap = np.ones(xx.shape, bool)
    for path in l2_paths:
        with rdm.open(path) as model:
            ey, ex = model.data.shape
            x, y = model.meta.wcs.invert(ra, dec, with_bounding_box=False)
        overlap &= (x > 1) & (y > 1) & (x < ex - 2) & (y < ey - 2)
    sampled = data[0:ny:8, 0:nx:8]
    finite_overlap = float(np.isfinite(sampled[overlap]).mean())

    catalog = SourceCatalog.read(os.path.join(out, "catalog.asdf"))
    pixel_sr = math.radians(coadd.meta.wcsinfo.pixel_scale) ** 2
    x, y = coadd.meta.wcs.invert(catalog.ra, catalog.dec, with_bounding_box=False)
    x, y = np.asarray(x), np.asarray(y)
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([x, y]))
    nearest = tree.query(np.column_stack([x, y]), k=2)[0][:, 1]
    # exposures covering each source, from their own WCS
    cover = np.zeros(x.size, int)
    for path in l2_paths:
        with rdm.open(path) as model:
            ey, ex = model.data.shape
            px, py = model.meta.wcs.invert(
                catalog.ra, catalog.dec, with_bounding_box=False
            )
        cover += (px > 16) & (py > 16) & (px < ex - 17) & (py < ey - 17)
    rows = []
    for i in np.flatnonzero((catalog.sigma_arcsec == 0) & (nearest >= ISOLATION)):
        measured = aperture_flux(data, err, x[i], y[i], pixel_sr)
        if measured is not None:
            rows.append((catalog.flux_ujy[i], *measured, nearest[i], cover[i], i))
    rows = np.array(rows).reshape(-1, 6)
    np.save(os.path.join(out, f"stars_{tag}.npy"), rows)
    result = {
        "weight_type": weight_type,
        "skipped": list(skip),
        "coadd_shape": [ny, nx],
        "mosaic_s": round(t_mosaic, 1),
        "finite_over_overlap": finite_overlap,
        "overlap_pixels_sampled": int(overlap.sum()),
        "columns": (
            "catalogue uJy, measured uJy, sigma uJy, nearest source px, cover, "
            "catalogue index"
        ),
        "conversion_megajanskys": [
            float(rdm.open(p).meta.photometry.conversion_megajanskys) for p in l2_paths
        ],
    }
    for label, keep in (
        (f"nearest>={ISOLATION:g}px", rows[:, 3] >= ISOLATION),
        ("nearest>=25px", rows[:, 3] >= 25),
        (
            f"nearest>=25px, in all {len(l2_paths)}",
            (rows[:, 3] >= 25) & (rows[:, 4] == len(l2_paths)),
        ),
    ):
        result[label] = _summary(rows[keep])
    with open(os.path.join(out, f"mosaic_{tag}.json"), "w") as f:
        json.dump(result, f, indent=1)


def _summary(rows):
    """Statistics of measured / catalogue flux for stars where 2 % is >= 3 sigma."""
    truth, measured, sigma = rows[:, 0], rows[:, 1], rows[:, 2]
    ratio = measured / truth
    precise = sigma < 0.02 / 3 * truth
    good = ratio[precise]
    if good.size == 0:
        return {"stars": int(ratio.size), "precise_stars": 0}
    return {
        "stars": int(ratio.size),
        "precise_stars": int(good.size),
        "median_ratio": float(np.median(good)),
        "robust_scatter": float(1.4826 * np.median(np.abs(good - np.median(good)))),
        "within_2pct": float(np.mean(np.abs(good - 1) < 0.02)),
        "max_abs_dev": float(np.max(np.abs(good - 1))),
        "median_pull_all": float(np.median((measured - truth) / sigma)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "mosaic"))
    parser.add_argument("--phase", default="all", choices=["all", "pipeline", "mosaic"])
    parser.add_argument(
        "--weight-type",
        default="ivm,exptime",
        help="resample weight types to run the mosaic with (comma-separated)",
    )
    parser.add_argument(
        "--skip", default="", help="mosaic steps to skip, e.g. outlier_detection"
    )
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    weight_types = [w for w in args.weight_type.split(",") if w]
    if args.phase == "mosaic":
        for weight_type in weight_types:
            _mosaic_phase(out, weight_type, [n for n in args.skip.split(",") if n])
        return 0
    env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="true")
    py = sys.executable
    sim = None
    if args.phase == "all":
        sim = _timed(
            [
                py,
                "-m",
                "romanimpreprocess.simulate.cli",
                "--out",
                out,
                "--size",
                str(args.size),
                "--seed",
                str(args.seed),
                "--dithers",
                str(args.count),
            ],
            env=env,
        )
    runs = []
    import yaml

    for config in sorted(glob.glob(os.path.join(out, "exp*", "*.yaml"))):
        with open(config) as f:
            legacy = yaml.safe_load(f)
        legacy["SKYORDER"] = 0
        with open(config, "w") as f:
            yaml.safe_dump(legacy, f, sort_keys=False)
        runs.append(
            _timed(
                [py, "-m", "romanimpreprocess.L1_to_L2.gen_cal_image", config], env=env
            )
        )
    result = {"size": args.size, "count": args.count, "seed": args.seed}
    for weight_type in weight_types:
        mosaic = _timed(
            [
                py,
                __file__,
                "--out",
                out,
                "--phase",
                "mosaic",
                "--weight-type",
                weight_type,
            ],
            env=env,
        )
        mosaic.pop("output")
        with open(os.path.join(out, f"mosaic_{weight_type}.json")) as f:
            result[f"mosaic_{weight_type}"] = {**json.load(f), "process": mosaic}
    for item in (sim, *runs):
        if item is not None:
            item.pop("output")
    result.update({"simulate": sim, "pipeline": runs})
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
