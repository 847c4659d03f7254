"""An L1 made by our ``sim_to_isim.run_config`` calibrated by the legacy 1.0.0.

Runs in the legacy venv (``bench/.venv-legacy``, romanimpreprocess 1.0.0), on the
directory written by ``bench/downstream_make.py``: calibrates its L1 with the legacy
``gen_cal_image.calibrateimage`` (the L2 config of the driver, without NOISE, to
``legacy_L2_<tag>.asdf``) and compares the legacy L2 with the truth image the L1 was
made from: median of (L2 - background) / (truth / EXPTIME / g_ideal) over source
pixels (truth > 10 DN/s) that neither our mask file nor the legacy dq flag, the
background being the median of the empty pixels. Writes ``legacy_check.json``.

    bench/.venv-legacy/bin/python bench/legacy_check.py --dir bench/out/downstream
"""

import argparse
import json
import os
import time

import asdf
import numpy as np
from astropy.io import fits

G_IDEAL = 1.458


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    directory = os.path.abspath(args.dir)
    with open(os.path.join(directory, "make_summary.json")) as f:
        made = json.load(f)
    c1, c2 = made["c1"], made["c2"]
    config = {k: v for k, v in c2.items() if k != "NOISE"}
    out = os.path.join(directory, "legacy_" + os.path.basename(c2["OUT"]))
    config["OUT"] = out

    import romanimpreprocess
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    version = getattr(romanimpreprocess, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v

        version = _v("romanimpreprocess")
    t0 = time.perf_counter()
    gen_cal_image.calibrateimage(config)
    elapsed = time.perf_counter() - t0

    sca = int(os.path.basename(c1["IN"])[:-5].split("_")[-1])
    with fits.open(c1["IN"]) as hdus:
        image = hdus[0].data.astype(np.float64)
        exptime = float(hdus[0].header["EXPTIME"])
    # the detector grid: columns reversed for SCAs 3, 6, ..., rows for the others
    image = image[:, ::-1] if sca % 3 == 0 else image[::-1, :]
    expected = image / exptime / G_IDEAL
    with asdf.open(out) as af:
        data = np.array(af["roman"]["data"], dtype=np.float64)
        dq = np.array(af["roman"]["dq"])
    with fits.open(c2["OUT"][:-5] + "_mask.fits") as hdus:
        ours_masked = hdus["MASK"].data.astype(bool)
    usable = ~ours_masked & (dq == 0) & np.isfinite(data)
    empty = usable & (expected < 0.01)
    background = float(np.median(data[empty]))
    sources = usable & (expected > 10.0)
    ratio = (data[sources] - background) / expected[sources]
    summary = {
        "legacy_version": version,
        "legacy_l2": out,
        "legacy_gen_cal_image_s": round(elapsed, 1),
        "source_pixels": int(sources.sum()),
        "background_dn_s": background,
        "median_ratio_on_sources": float(np.median(ratio)),
        "bias_percent": float(100 * (np.median(ratio) - 1)),
        "within_0.5_percent": bool(abs(np.median(ratio) - 1) < 0.005),
        "nonfinite_pixels": int((~np.isfinite(data)).sum()),
    }
    with open(os.path.join(directory, "legacy_check.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 0 if summary["within_0.5_percent"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
