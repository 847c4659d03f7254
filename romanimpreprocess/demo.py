"""``make demo``: simulate an exposure with its calibration set, calibrate it, summarise.

Runs the whole L1 -> L2 pipeline when it is available; otherwise runs the steps that
exist so far and says so.
"""

import argparse
import importlib
import logging
import os
import sys
import time

log = logging.getLogger("romanimpreprocess.demo")


def _have(module):
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def main(argv=None):
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512, help="frame size (px)")
    parser.add_argument("--out", default="demo_out", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    if not _have("romanimpreprocess.simulate"):
        print(
            "demo: the simulator is not available yet; running the steps that exist "
            "on a synthetic exposure with a known rate."
        )
        return _demo_existing_steps(out, args.size, args.seed)
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    t0 = time.perf_counter()
    paths = write_simulation(out, SimulationConfig(size=args.size, seed=args.seed))
    print(
        f"simulated {args.size}x{args.size} exposure in "
        f"{time.perf_counter() - t0:.1f} s: {paths.l1}"
    )

    if _have("romanimpreprocess.L1_to_L2.gen_cal_image"):
        from romanimpreprocess.L1_to_L2.gen_cal_image import gen_cal_image

        t0 = time.perf_counter()
        gen_cal_image(paths.config_yaml)
        print(f"calibrated in {time.perf_counter() - t0:.1f} s: {paths.out}")
        if _have("romanimpreprocess.quicklook"):
            from romanimpreprocess import quicklook

            png = os.path.splitext(paths.out)[0] + "_quicklook.png"
            print(quicklook.summary(paths.out, truth=paths.truth))
            quicklook.make_png(paths.out, png)
            print(f"quicklook image: {png}")
        return 0

    print("demo: the full pipeline is not available yet; running the steps that exist.")
    from romanimpreprocess.dq_init import DQInitStep

    ramp = DQInitStep.call(paths.l1, override_mask=paths.caldir["mask"])
    print(
        f"dq_init: ramp {ramp.data.shape}, cal_step.dq_init = "
        f"{ramp.meta.cal_step.dq_init}, flagged pixels = "
        f"{int((ramp.pixeldq != 0).sum())}"
    )
    return 0


def _demo_existing_steps(out, size, seed):
    """dq_init -> ramp_fit on a noisy synthetic ramp of known rate; print the check."""
    import asdf
    import numpy as np
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.constants import AMP33_WIDTH, REF_BORDER
    from romanimpreprocess.datamodels import resultant_times
    from romanimpreprocess.dq_init import DQInitStep
    from romanimpreprocess.ramp_fitting import RampFitStep

    rng = np.random.default_rng(seed)
    read_pattern = [[0], [1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15]]
    frame_time, gain, read_noise, bias = 3.04, 1.8, 6.5, 1000.0
    nres = len(read_pattern)
    rate = rng.uniform(0.5, 50.0, (size, size))  # DN/s
    nframes = read_pattern[-1][-1] + 1
    counts = np.zeros((size, size))
    resultants = np.zeros((nres, size, size))
    which = {f: i for i, frames in enumerate(read_pattern) for f in frames}
    for frame in range(nframes):
        if frame:
            counts += rng.poisson(rate * gain * frame_time) / gain
        read = bias + counts + rng.normal(0.0, read_noise, (size, size))
        resultants[which[frame]] += read / len(read_pattern[which[frame]])
    raw = dm.ScienceRawModel.create_fake_data(shape=(nres, size, size))
    raw.data = np.clip(np.rint(resultants), 0, 65535).astype(np.uint16)
    raw.amp33 = np.full((nres, size, AMP33_WIDTH), int(bias), np.uint16)
    raw.meta.exposure.read_pattern = read_pattern
    raw.meta.exposure.nresultants = nres
    raw.meta.exposure.frame_time = frame_time
    raw.meta.instrument.detector = "WFI01"
    for key in ("xstart", "xstop", "ystart", "ystop"):
        raw.meta.guide_star[f"window_{key}"] = -1
    l1 = os.path.join(out, "demo_uncal.asdf")
    raw.save(l1)
    refs = {}
    for name, value in (("gain", gain), ("read", read_noise)):
        refs[name] = os.path.join(out, f"demo_{name}.asdf")
        tree = {"data": np.full((size, size), value, np.float32)}
        asdf.AsdfFile({"roman": tree}).write_to(refs[name])

    t0 = time.perf_counter()
    ramp = DQInitStep.call(l1, override_mask="N/A")
    image = RampFitStep.call(
        ramp, override_gain=refs["gain"], override_readnoise=refs["read"]
    )
    elapsed = time.perf_counter() - t0
    b = REF_BORDER
    truth = rate[b:-b, b:-b]
    good = np.isfinite(image.data) & (image.dq == 0)
    pull = (image.data - truth)[good] / np.asarray(image.err, np.float64)[good]
    tbar = resultant_times(read_pattern, frame_time)[0]
    print(
        f"dq_init + ramp_fit on {size}x{size}, {nres} resultants "
        f"(tbar {tbar[0]:.1f}..{tbar[-1]:.1f} s) in {elapsed:.1f} s"
    )
    print(
        f"good pixels: {good.mean():.1%}; (rate - truth)/err: mean {pull.mean():+.3f}, "
        f"std {pull.std():.3f} (expect ~0 and ~1)"
    )
    print("the full L1 -> L2 pipeline is not available yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
