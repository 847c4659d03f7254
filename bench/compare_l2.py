"""Compare two L2 products pixel by pixel (ours vs the legacy 1.0.0 output).

Usage::

    python bench/compare_l2.py ours_cal.asdf legacy_cal.asdf [--json out.json]

Reports, for data, err, var_poisson and data_withsky, the fraction of pixels equal or
within 1e-6 relative, the dq agreement, and on good pixels (no PixelMask1 flag in
either) the median and 99th percentile of |delta| / err.
"""

import argparse
import json
import sys

import asdf
import numpy as np

FIELDS = ("data", "err", "var_poisson", "data_withsky")


def _load(path):
    with asdf.open(path, lazy_load=False) as af:
        roman = af.tree["roman"]
        out = {k: np.array(roman[k], dtype=np.float64) for k in FIELDS if k in roman}
        out["dq"] = np.array(roman["dq"], dtype=np.uint32)
        info = af.tree.get("processinfo") or {}
        out["medsky"] = info.get("medsky")
    return out


def compare(ours_path, legacy_path):
    from romanimpreprocess.sky.sky import pixel_mask1

    ours, legacy = _load(ours_path), _load(legacy_path)
    result = {}
    for key in FIELDS:
        if key not in ours or key not in legacy:
            continue
        a, b = ours[key], legacy[key]
        both = np.isfinite(a) & np.isfinite(b)
        same = (a == b) | (~np.isfinite(a) & ~np.isfinite(b))
        close = same | (both & (np.abs(a - b) <= 1e-6 * np.maximum(np.abs(b), 1e-30)))
        result[key] = {
            "identical": float(same.mean()),
            "within_1e-6": float(close.mean()),
        }
    dq_same = ours["dq"] == legacy["dq"]
    result["dq"] = {
        "identical": float(dq_same.mean()),
        "differing_pixels": int((~dq_same).sum()),
    }
    good = ~pixel_mask1(ours["dq"]) & ~pixel_mask1(legacy["dq"])
    err = legacy["err"]
    good &= np.isfinite(err) & (err > 0) & np.isfinite(ours["data"])
    good &= np.isfinite(legacy["data"])
    for key in ("data_withsky", "data"):
        if key in ours and key in legacy:
            pull = np.abs(ours[key] - legacy[key])[good] / err[good]
            result[f"{key}_delta_over_err"] = {
                "good_pixels": float(good.mean()),
                "median": float(np.median(pull)),
                "p99": float(np.percentile(pull, 99)),
                "fraction_above_0.05": float(np.mean(pull > 0.05)),
            }
    result["medsky"] = {"ours": ours["medsky"], "legacy": legacy["medsky"]}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ours")
    parser.add_argument("legacy")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = compare(args.ours, args.legacy)
    text = json.dumps(result, indent=2, default=float)
    sys.stdout.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
