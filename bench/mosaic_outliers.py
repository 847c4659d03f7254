"""Why a star of bench_mosaic.py is off: our L2s against the simulation's truth.

Usage::

    python bench/mosaic_outliers.py OUT [--weight-type exptime]

``OUT`` is a ``bench_mosaic.py --out`` directory after its mosaic phase. Two parts,
both printed as JSON (and written to ``OUT/outliers_<weight type>.json``):

1. Cosmic rays, per pixel, on every exposure: each simulated hit (the truth's
   ``jumps``: pixel, frame, charge) and its 8 neighbours (IPC), the L2's
   ``(data_withsky - rate_l2) / err`` and whether the pixel is JUMP_DET or
   DO_NOT_USE, by amplitude and by the resultant the hit falls in.
2. Stars: every precise isolated star of the mosaic check whose coadd flux is off by
   more than 2 %. For each exposure, the aperture (r = 6 px) sum of
   ``data_withsky - rate_l2`` over the star's true aperture signal, split into the
   pixels hit by a cosmic ray, their neighbours, the DO_NOT_USE pixels and the rest;
   the largest single-pixel contribution says which one it is.
"""

import argparse
import glob
import json
import os

import asdf
import numpy as np
import roman_datamodels as rdm
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import REF_BORDER

APERTURE = 6.0
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _exposure(l2_path):
    truth_path = glob.glob(os.path.join(os.path.dirname(l2_path), "*_truth.asdf"))[0]
    with asdf.open(truth_path) as af:
        truth = {
            "rate_l2": np.array(af.tree["rate_l2"], np.float64),
            "jumps": np.array(af.tree["jumps"]),
            "pattern": [list(r) for r in af.tree["read_pattern"]],
        }
    with rdm.open(l2_path) as model, asdf.open(l2_path) as af:
        l2 = {
            "data": np.array(model.data_withsky, np.float64),
            "err": np.array(af.tree["processinfo"]["err_float32"], np.float64),
            "dq": np.array(model.dq),
            "wcs": model.meta.wcs,
        }
    return truth, l2


def _resultant_of(frame, pattern):
    """Index of the resultant whose frames include or first follow ``frame``."""
    for i, frames in enumerate(pattern):
        if frame <= frames[-1]:
            return i
    return len(pattern)


def cosmic_ray_census(truth, l2):
    """Pull and flags of every hit pixel and of its neighbours."""
    b = REF_BORDER
    ny, nx = l2["data"].shape
    resid = (l2["data"] - truth["rate_l2"]) / l2["err"]
    rows = []
    for y, x, frame, amp in truth["jumps"]:
        y, x = int(y) - b, int(x) - b
        for dy, dx in [(0, 0), *_NEIGHBOURS]:
            yy, xx = y + dy, x + dx
            if not (0 <= yy < ny and 0 <= xx < nx):
                continue
            rows.append(
                (
                    dy == 0 and dx == 0,
                    amp,
                    _resultant_of(int(frame), truth["pattern"]),
                    resid[yy, xx],
                    bool(l2["dq"][yy, xx] & pixel.JUMP_DET),
                    bool(l2["dq"][yy, xx] & pixel.DO_NOT_USE),
                    truth["rate_l2"][yy, xx],
                )
            )
    rows = np.array(rows, dtype=np.float64)
    out = {}
    for label, keep in (("hit", rows[:, 0] == 1), ("neighbour", rows[:, 0] == 0)):
        part = rows[keep]
        usable = part[:, 5] == 0
        pull = part[usable, 3]
        out[label] = {
            "pixels": int(part.shape[0]),
            "JUMP_DET": float(part[:, 4].mean()),
            "DO_NOT_USE": float(part[:, 5].mean()),
            "usable |pull| > 5": float(np.mean(np.abs(pull) > 5)),
            "usable, not JUMP_DET, |pull| > 5": float(
                np.mean((np.abs(pull) > 5) & (part[usable, 4] == 0))
            ),
            "by resultant (|pull| > 5 among usable)": {
                str(int(r)): float(np.mean(np.abs(pull[part[usable, 2] == r]) > 5))
                for r in np.unique(part[usable, 2])
            },
        }
    return out, rows


def star_budget(truth, l2, ra, dec):
    """Aperture residual / true signal, split by what the pixels are."""
    b = REF_BORDER
    ny, nx = l2["data"].shape
    x, y = l2["wcs"].invert(ra, dec, with_bounding_box=False)
    x, y = float(x), float(y)
    half = int(APERTURE) + 2
    ix, iy = round(x), round(y)
    if not (half <= ix < nx - half and half <= iy < ny - half):
        return None
    cut = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
    cy, cx = np.mgrid[cut]
    inside = np.hypot(cx - x, cy - y) <= APERTURE
    rate = truth["rate_l2"][cut]
    ring = np.hypot(cx - x, cy - y) > APERTURE
    signal = float(np.sum(rate[inside] - np.median(rate[ring])))
    resid = l2["data"][cut] - rate
    dq = l2["dq"][cut]
    hit = np.zeros(rate.shape, bool)
    near = np.zeros(rate.shape, bool)
    for jy, jx, _, _ in truth["jumps"]:
        jy, jx = int(jy) - b - (iy - half), int(jx) - b - (ix - half)
        for dy, dx in [(0, 0), *_NEIGHBOURS]:
            yy, xx = jy + dy, jx + dx
            if 0 <= yy < rate.shape[0] and 0 <= xx < rate.shape[1]:
                (hit if dy == dx == 0 else near)[yy, xx] = True
    near &= ~hit
    dnu = (dq & pixel.DO_NOT_USE) != 0
    parts = {
        "cosmic-ray pixel": inside & hit & ~dnu,
        "cosmic-ray neighbour": inside & near & ~dnu,
        "DO_NOT_USE": inside & dnu,
        "other": inside & ~hit & ~near & ~dnu,
    }
    budget = {k: float(np.sum(resid[m]) / signal) for k, m in parts.items()}
    k = np.argmax(np.where(inside & ~dnu, np.abs(resid), -1))
    worst = np.unravel_index(k, rate.shape)
    budget["worst pixel"] = {
        "dev": float(resid[worst] / signal),
        "pull": float(resid[worst] / l2["err"][cut][worst]),
        "kind": next((n for n, m in parts.items() if m[worst]), "?"),
        "dq": int(dq[worst]),
    }
    budget["L2 deviation (usable pixels)"] = float(
        np.sum(resid[inside & ~dnu]) / signal
    )
    return budget


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--weight-type", default="exptime")
    args = parser.parse_args(argv)
    from romanimpreprocess.simulate.field import SourceCatalog

    l2_paths = sorted(glob.glob(os.path.join(args.out, "exp*", "*_cal.asdf")))
    exposures = [_exposure(p) for p in l2_paths]
    result = {"cosmic_rays": {}}
    for path, (truth, l2) in zip(l2_paths, exposures, strict=True):
        census, _ = cosmic_ray_census(truth, l2)
        result["cosmic_rays"][os.path.basename(path)] = census
    catalog = SourceCatalog.read(os.path.join(args.out, "catalog.asdf"))
    stars = np.load(os.path.join(args.out, f"stars_{args.weight_type}.npy"))
    true, measured, sigma = stars[:, 0], stars[:, 1], stars[:, 2]
    precise = sigma < 0.02 / 3 * true
    off = precise & (np.abs(measured / true - 1) > 0.02)
    result["precise"] = int(precise.sum())
    result["off_by_more_than_2pct"] = int(off.sum())
    kinds = {}
    result["stars"] = []
    for row in stars[off]:
        i = int(row[5])
        entry = {"index": i, "ratio": float(row[1] / row[0]), "true_uJy": row[0]}
        for path, (truth, l2) in zip(l2_paths, exposures, strict=True):
            entry[os.path.basename(path)] = star_budget(
                truth, l2, catalog.ra[i], catalog.dec[i]
            )
        result["stars"].append(entry)
        worst = max(
            (e for k, e in entry.items() if k.endswith(".asdf") and e),
            key=lambda e: abs(e["L2 deviation (usable pixels)"]),
        )
        kind = max(
            ("cosmic-ray pixel", "cosmic-ray neighbour", "other"),
            key=lambda k: abs(worst[k]),
        )
        kinds[kind] = kinds.get(kind, 0) + 1
    result["largest part of the worst exposure's deviation"] = kinds
    with open(os.path.join(args.out, f"outliers_{args.weight_type}.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    print(json.dumps({k: v for k, v in result.items() if k != "stars"}, indent=1))
    for entry in result["stars"]:
        print(json.dumps(entry, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
