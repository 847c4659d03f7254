"""Quick look at an L2 product: a PNG and a one-screen text summary.

``rip-quicklook out_cal.asdf [--png out.png]`` or ``quicklook(path)`` from Python.
The PNG has three panels: the image (asinh stretch between the 1st and 99.5th
percentiles), the DQ mask (grey: any flag, red: PixelMask1-masked) and a histogram
of the good pixels. It is written with numpy and zlib only (no plotting library).
"""

import argparse
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QuicklookSummary", "main", "quicklook", "write_png"]


@dataclass
class QuicklookSummary:
    """What `quicklook` found; ``str()`` is the one-screen text summary."""

    path: str
    png: str | None
    shape: tuple
    median_sky: float
    median_data: float
    flagged_fraction: dict = field(default_factory=dict)
    jump_pixels: int = 0
    step_times: dict = field(default_factory=dict)
    cal_step: dict = field(default_factory=dict)

    def __str__(self):
        lines = [
            f"L2 product  {self.path}",
            f"image       {self.shape[1]} x {self.shape[0]} pixels",
            (
                f"median sky  {self.median_sky:.5g} DN/s   median data "
                f"{self.median_data:.5g} DN/s"
            ),
            f"jumps       {self.jump_pixels} pixels with JUMP_DET",
            "flags       "
            + ", ".join(
                f"{k} {v:.3%}" for k, v in self.flagged_fraction.items() if v > 0
            ),
        ]
        if self.step_times:
            total = sum(self.step_times.values())
            lines.append(
                f"time        {total:.2f} s: "
                + ", ".join(f"{k} {v:.2f}" for k, v in self.step_times.items())
            )
        if self.cal_step:
            done = [k for k, v in self.cal_step.items() if v == "COMPLETE"]
            skipped = [k for k, v in self.cal_step.items() if v == "SKIPPED"]
            lines.append(f"complete    {', '.join(done)}")
            if skipped:
                lines.append(f"skipped     {', '.join(skipped)}")
        if self.png:
            lines.append(f"PNG         {self.png}")
        return "\n".join(lines)


def write_png(path, rgb):
    """Write an (ny, nx, 3) uint8 array as a PNG (zlib, no filter)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    ny, nx, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(ny))

    def chunk(kind, data):
        body = kind + data
        return (
            struct.pack(">I", len(data))
            + body
            + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", nx, ny, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, path)


def _downsample(image, max_side):
    step = max(1, int(np.ceil(max(image.shape) / max_side)))
    ny, nx = (s - s % step for s in image.shape)
    return image[:ny, :nx].reshape(ny // step, step, nx // step, step)


def _panels(data, dq, masked, max_side=512):
    finite = np.isfinite(data) & ~masked
    lo, hi = np.percentile(data[finite], [1, 99.5]) if finite.any() else (0, 1)
    scale = max(hi - lo, 1e-12)
    stretched = np.arcsinh(np.clip((data - lo) / scale, 0, None) * 10) / np.arcsinh(10)
    stretched = np.nan_to_num(np.clip(stretched, 0, 1))
    img = _downsample(stretched, max_side).mean(axis=(1, 3))
    grey = (img * 255).astype(np.uint8)
    image_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    any_flag = _downsample(dq != 0, max_side).any(axis=(1, 3))
    mask = _downsample(masked, max_side).any(axis=(1, 3))
    mask_rgb = np.zeros((*any_flag.shape, 3), np.uint8)
    mask_rgb[any_flag] = (120, 120, 120)
    mask_rgb[mask] = (220, 40, 40)
    # histogram panel of the good pixels
    h, w = image_rgb.shape[:2]
    hist_rgb = np.full((h, w, 3), 255, np.uint8)
    values = data[finite]
    if values.size:
        counts, _ = np.histogram(values, bins=w, range=(lo, hi))
        heights = (np.log1p(counts) / max(np.log1p(counts).max(), 1) * (h - 1)).astype(
            int
        )
        rows = np.arange(h)[:, None]
        bars = rows >= (h - 1 - heights[None, :])
        hist_rgb[bars] = (40, 70, 160)
    gap = np.full((h, 8, 3), 255, np.uint8)
    return np.concatenate([image_rgb, gap, mask_rgb, gap, hist_rgb], axis=1)


def quicklook(path, png_path=None, *, make_png=True) -> QuicklookSummary:
    """Summarise the L2 file ``path``; write ``png_path`` (default next to it)."""
    import roman_datamodels as rdm
    from roman_datamodels.dqflags import pixel

    from romanimpreprocess.datamodels.l2 import read_processinfo
    from romanimpreprocess.sky.sky import pixel_mask1

    info = read_processinfo(path) or {}
    with rdm.open(path) as model:
        data = np.array(model.data, dtype=np.float64)
        dq = np.array(model.dq, dtype=np.uint32)
        cal_step = dict(model.meta.cal_step) if "cal_step" in model.meta else {}
    masked = pixel_mask1(dq)
    fractions = {}
    for flag in pixel:
        if int(flag) == 0:
            continue
        fractions[flag.name] = float(np.mean((dq & np.uint32(flag)) != 0))
    if make_png:
        png_path = png_path or os.path.splitext(os.fspath(path))[0] + "_quicklook.png"
        write_png(png_path, _panels(data, dq, masked))
    good = np.isfinite(data) & ~masked
    return QuicklookSummary(
        path=os.fspath(path),
        png=png_path if make_png else None,
        shape=data.shape,
        median_sky=float(info.get("medsky", np.nan)),
        median_data=float(np.median(data[good])) if good.any() else float("nan"),
        flagged_fraction=fractions,
        jump_pixels=int(np.count_nonzero(dq & np.uint32(pixel.JUMP_DET))),
        step_times=dict(info.get("step_times") or {}),
        cal_step=cal_step,
    )


def main(argv=None):
    """``rip-quicklook L2.asdf [--png PATH] [--no-png]``."""
    parser = argparse.ArgumentParser(prog="rip-quicklook", description=__doc__)
    parser.add_argument("l2", help="L2 ASDF product")
    parser.add_argument(
        "--png", default=None, help="PNG path (default <stem>_quicklook.png)"
    )
    parser.add_argument("--no-png", action="store_true", help="text summary only")
    opts = parser.parse_args(argv)
    if not os.path.isfile(opts.l2):
        sys.stderr.write(f"rip-quicklook: {opts.l2}: file not found\n")
        return 2
    summary = quicklook(opts.l2, opts.png, make_png=not opts.no_png)
    sys.stdout.write(str(summary) + "\n")
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import start_cli

    start_cli()
    sys.exit(main())
