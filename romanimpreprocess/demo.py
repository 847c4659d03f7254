"""``make demo``: simulate an exposure with its calibration set, calibrate it, summarise.

1. ``rip-simulate``: a simulated L1 exposure (``--size``, default 512; 4096 for a full
   frame), its legacy calibration set, a legacy YAML config and the truth;
2. the legacy YAML through ``gen_cal_image`` (L1ToL2Pipeline) with FITS output;
3. the quicklook summary and PNG, and how the result compares with the truth.
"""

import argparse
import logging
import os
import sys
import time

log = logging.getLogger("romanimpreprocess.demo")


def main(argv=None):
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="frame size (px)")
    parser.add_argument("--out", default="demo_out", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--read-pattern", default="survey6")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s - %(name)s - %(levelname)s - %(message)s",
    )
    import yaml

    from romanimpreprocess import quicklook
    from romanimpreprocess.datamodels.l2 import read_processinfo
    from romanimpreprocess.L1_to_L2 import gen_cal_image
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    out = os.path.abspath(args.out)
    t0 = time.perf_counter()
    paths = write_simulation(
        out,
        SimulationConfig(
            size=args.size, seed=args.seed, read_pattern=args.read_pattern
        ),
    )
    t_sim = time.perf_counter() - t0

    with open(paths.config_yaml) as f:
        config = yaml.safe_load(f)
    config.update({"SKYORDER": 1, "FITSOUT": True})
    with open(paths.config_yaml, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    t0 = time.perf_counter()
    gen_cal_image(config)
    t_cal = time.perf_counter() - t0

    summary = quicklook.quicklook(paths.out)
    comparison = _compare_with_truth(paths, read_processinfo(paths.out))
    lines = [
        "",
        "=" * 78,
        (
            f"simulated {args.size}x{args.size}, {args.read_pattern}: {t_sim:.1f} s "
            f"({paths.directory})"
        ),
        f"calibrated with gen_cal_image {paths.config_yaml}: {t_cal:.1f} s",
        "",
        str(summary),
        "",
        comparison,
        "",
        "Rerun the calibration yourself:",
        f"  python -m romanimpreprocess.L1_to_L2.gen_cal_image {paths.config_yaml}",
        f"  strun rip_l1l2 --legacy_config={paths.config_yaml}",
        "=" * 78,
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _compare_with_truth(paths, info):
    import asdf
    import numpy as np
    import roman_datamodels as rdm
    from roman_datamodels.dqflags import pixel

    with asdf.open(paths.truth, lazy_load=False) as af:
        truth = np.array(af["rate_l2"], dtype=np.float64)
        bad_pixels = np.array(af["bad_pixels"], dtype=bool)
        sky = float(af["sky_rate_l2"])
    with rdm.open(paths.out) as model:
        data = np.array(model.data_withsky, dtype=np.float64)
        dq = np.array(model.dq)
        err = np.array(model.err, dtype=np.float64)
    bad = pixel.DO_NOT_USE | pixel.JUMP_DET | pixel.SATURATED
    good = ((dq & bad) == 0) & np.isfinite(err) & (err > 0) & ~bad_pixels
    pull = (data - truth)[good] / err[good]
    return (
        f"against the truth ({good.mean():.1%} good pixels): chi2/dof "
        f"{np.mean(pull**2):.3f} (expect 1), median pull {np.median(pull):+.3f}; "
        f"sky {info['medsky']:.4f} vs true {sky:.4f} DN/s "
        f"({(info['medsky'] / sky - 1):+.2%})"
    )


if __name__ == "__main__":
    from romanimpreprocess._startup import start_cli

    start_cli()
    sys.exit(main())
