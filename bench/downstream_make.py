"""Make the survey driver's products on a full frame (first half of `make downstream`).

Runs in our venv. Writes into ``--out``:

* ``cal/``: a simulated calibration set (`romanimpreprocess.simulate`) for the read
  pattern below;
* ``truth/Roman_WAS_truth_<F>_<obsid>_<sca>.fits``: a synthetic truth image (the
  OpenUniverse layout, PyIMCOM's truth naming);
* the products of the survey team's four driver calls, with their L2 naming
  (PyIMCOM input format ``L2_2506``): ``sim_L1_<F>_<obsid>_<sca>.asdf`` (and its
  ``_asdf_wcshead.txt``), ``sim_L2_<F>_<obsid>_<sca>.asdf``,
  ``sim_L2_<F>_<obsid>_<sca>_noise.asdf`` (layers RS2, Prb2) and
  ``sim_L2_<F>_<obsid>_<sca>_mask.fits``;
* ``make_summary.json``: paths, step times, and the L2 against the truth.

The calls are the driver's (runs/summer2025run/OpenUniverse_to_L1L2.py), unchanged::

    sim_to_isim.run_config(c1)
    gen_noise_image.calibrateimage(c2 | {"SLICEOUT": True})
    gen_noise_image.generate_all_noise(c2)
    maskhandling.PixelMask1.convert_file(c2["OUT"], c2["OUT"][:-5] + "_mask.fits")
"""

import argparse
import json
import logging
import os
import time

import numpy as np
import yaml

READS = [0, 1, 1, 3, 3, 6, 6, 10, 10, 14, 14, 18]
G_IDEAL = 1.458


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--size", type=int, default=4096, help="full-frame size")
    parser.add_argument("--obsid", type=int, default=8)
    parser.add_argument("--sca", type=int, default=7)
    parser.add_argument("--filter", default="H158")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from romanimpreprocess.from_sim.truth import write_truth_image
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "truth"), exist_ok=True)
    times = {}
    pattern = [list(range(READS[i], READS[i + 1])) for i in range(0, len(READS), 2)]
    t0 = time.perf_counter()
    sim = write_simulation(
        os.path.join(out, "cal"),
        SimulationConfig(
            size=args.size,
            read_pattern=pattern,
            seed=3,
            n_sources=4,
            detector=f"WFI{args.sca:02d}",
        ),
    )
    times["calibration_set_s"] = time.perf_counter() - t0
    with open(sim.config_yaml) as f:
        base = yaml.safe_load(f)
    tag = f"{args.filter}_{args.obsid}_{args.sca}"
    truth = write_truth_image(
        os.path.join(out, "truth"),
        args.size - 8,
        obsid=args.obsid,
        sca=args.sca,
        seed=4,
        prefix=f"Roman_WAS_truth_{args.filter}",
        filter=args.filter,
    )
    l1 = os.path.join(out, f"sim_L1_{tag}.asdf")
    l2 = os.path.join(out, f"sim_L2_{tag}.asdf")
    c1 = {
        "IN": truth,
        "OUT": l1,
        "READS": READS,
        "CALDIR": base["CALDIR"],
        "CNORM": 1.0,
        "SEED": 100 * args.obsid + args.sca,
        "FITSOUT": False,
    }
    c2 = {
        "IN": l1,
        "OUT": l2,
        "FITSWCS": l1[:-5] + "_asdf_wcshead.txt",
        "CALDIR": base["CALDIR"],
        "RAMP_OPT_PARS": base["RAMP_OPT_PARS"],
        "JUMP_DETECT_PARS": base["JUMP_DETECT_PARS"],
        "SKYORDER": 2,
        "FITSOUT": False,
        "NOISE": {
            "LAYER": ["RS2", "Prb2"],
            "TEMP": os.path.join(out, f"noise_temp_{tag}.asdf"),
            "SEED": 500 + args.sca,
            "OUT": l2[:-5] + "_noise.asdf",
        },
    }

    from romanimpreprocess.from_sim import sim_to_isim
    from romanimpreprocess.L1_to_L2 import gen_noise_image
    from romanimpreprocess.utils import maskhandling

    t0 = time.perf_counter()
    sim_to_isim.run_config(c1)
    times["run_config_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen_noise_image.calibrateimage(c2 | {"SLICEOUT": True})
    times["calibrateimage_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen_noise_image.generate_all_noise(c2)
    times["generate_all_noise_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maskhandling.PixelMask1.convert_file(c2["OUT"], c2["OUT"][:-5] + "_mask.fits")
    times["convert_file_s"] = time.perf_counter() - t0

    # the L2 against the truth (sky subtracted by SKYORDER 2)
    import roman_datamodels as rdm
    from astropy.io import fits

    from romanimpreprocess.from_sim.ramps import orient_truth

    with fits.open(truth) as hdus:
        image, header = hdus[0].data.astype(np.float64), hdus[0].header
    image, _ = orient_truth(image, header, args.sca)
    expected = image / header["EXPTIME"] / G_IDEAL
    with fits.open(c2["OUT"][:-5] + "_mask.fits") as hdus:
        masked = hdus["MASK"].data.astype(bool)
    with rdm.open(l2) as model:
        data = np.array(model.data, dtype=np.float64)
        mjd = float(model.meta.ephemeris.time)
    empty = (expected < 0.01) & ~masked
    background = float(np.median(data[empty]))
    sources = (expected > 10.0) & ~masked
    ratio = (data[sources] - background) / expected[sources]
    summary = {
        "c1": c1,
        "c2": c2,
        "times_s": {k: round(v, 1) for k, v in times.items()},
        "nonfinite_data": int((~np.isfinite(data)).sum()),
        "masked_fraction": float(masked.mean()),
        "background_dn_s": background,
        "source_pixels": int(sources.sum()),
        "median_ratio_on_sources": float(np.median(ratio)),
        "ephemeris_mjd": mjd,
    }
    with open(os.path.join(out, "make_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("c1", "c2")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
