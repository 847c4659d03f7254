"""``rip-simulate``: write a simulated exposure, its calibration set and truth."""

import argparse
import logging
import sys

__all__ = ["main"]


def main(argv=None):
    """Command line entry point; returns the exit code."""
    # imported here: `python -m romanimpreprocess.simulate.cli` sets up its process
    # (romanimpreprocess._startup.start_cli) before the stack loads
    from romanimpreprocess.simulate.simulate import (
        READ_PATTERNS,
        SimulationConfig,
        write_simulation,
    )

    parser = argparse.ArgumentParser(
        prog="rip-simulate",
        description=(
            "Simulate a Roman WFI L1 exposure with a matching legacy calibration set, "
            "a legacy YAML config and a truth file."
        ),
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--size", type=int, default=4096, help="frame size N (N %% 32 == 0, N >= 64)"
    )
    parser.add_argument(
        "--read-pattern",
        default="survey6",
        help=f"named read pattern: {', '.join(READ_PATTERNS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--detector", default="WFI01", help="WFI01..WFI18")
    parser.add_argument("--sky-rate", type=float, default=1.5, help="sky, e/s")
    parser.add_argument(
        "--noiseless", action="store_true", help="no noise and no cosmic rays"
    )
    _add_field_options(parser)
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    try:
        config = SimulationConfig(
            size=opts.size,
            read_pattern=opts.read_pattern,
            seed=opts.seed,
            detector=opts.detector,
            sky_rate=opts.sky_rate,
            noiseless=opts.noiseless,
            ra=opts.ra,
            dec=opts.dec,
            roll=opts.roll,
        )
        if opts.dithers:
            return _write_dithered(opts, config)
        paths = write_simulation(opts.out, config)
    except ValueError as err:
        sys.stderr.write(f"rip-simulate: {err}\n")
        return 2
    sys.stdout.write(
        f"L1:      {paths.l1}\nWCS:     {paths.wcs_header}\n"
        f"config:  {paths.config_yaml}\ntruth:   {paths.truth}\n"
        f"output:  {paths.out} (written by the pipeline)\n"
        f"time:    simulate {paths.timings['simulate_s']:.1f} s, "
        f"write {paths.timings['write_s']:.1f} s\n"
    )
    return 0


def _add_field_options(parser):
    parser.add_argument(
        "--ra", type=float, default=None, help="deg, pointing (default: random)"
    )
    parser.add_argument("--dec", type=float, default=None, help="deg, pointing")
    parser.add_argument(
        "--roll", type=float, default=None, help="deg, position angle of the y axis"
    )
    parser.add_argument(
        "--dithers",
        type=int,
        default=0,
        metavar="N",
        help="N dithered exposures of one field (DIR/exp<i>, DIR/catalog.asdf)",
    )
    parser.add_argument(
        "--dither-step",
        type=float,
        default=None,
        metavar="PX",
        help="pixels between dithers, plus sub-pixel parts (default: 10%% of N)",
    )
    parser.add_argument(
        "--n-sources", type=int, default=None, help="sources of the dither catalogue"
    )


def _write_dithered(opts, config):
    from romanimpreprocess.simulate.dithers import write_dithered

    if opts.dithers < 1:
        raise ValueError(f"--dithers: need >= 1, got {opts.dithers}")
    field = write_dithered(
        opts.out,
        config,
        opts.dithers,
        step=opts.dither_step,
        n_sources=opts.n_sources,
    )
    lines = [f"catalog: {field.catalog}"]
    for (dx, dy), paths in zip(field.offsets, field.exposures, strict=True):
        lines.append(f"offset ({dx:.3f}, {dy:.3f}) px: {paths.config_yaml}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import start_cli

    start_cli()
    sys.exit(main())
