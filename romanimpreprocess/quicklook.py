"""Quick look at an L2 product or a romancal mosaic: a figure and a one-screen summary.

``rip-quicklook out_cal.asdf [--png out.png]`` or ``quicklook(path)`` from Python.
The figure (matplotlib, the optional extra ``romanimpreprocess[quicklook]``) has a
title with the file, filter, detector and exposure time, and three panels: the image
(asinh stretch between the 1st and 99.5th percentiles of the good pixels, pixel axes,
colour bar in the data's unit); the DQ flags present, one colour per flag with a
legend of the fraction of pixels (for a mosaic: the number of exposures per pixel);
and a histogram of the good pixels with log counts and labelled axes. Without
matplotlib the image alone is written with Pillow and the summary says why.
"""

import argparse
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QuicklookSummary", "main", "quicklook", "write_png"]

log = logging.getLogger(__name__)

MATPLOTLIB_MISSING = (
    "the quicklook figure needs matplotlib, which is not installed: "
    "pip install 'romanimpreprocess[quicklook]' (or matplotlib>=3.8)"
)


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
    kind: str = "L2"
    unit: str = "DN/s"
    optical_element: str = "?"
    detector: str = "?"
    exposure_time: float = float("nan")
    note: str = ""

    def __str__(self):
        label = "L2 product" if self.kind == "L2" else "mosaic    "
        lines = [
            f"{label}  {self.path}",
            (
                f"image       {self.shape[1]} x {self.shape[0]} pixels, "
                f"{self.optical_element}, {self.detector}, "
                f"exposure {self.exposure_time:.1f} s"
            ),
            (
                f"median sky  {self.median_sky:.5g} {self.unit}   median data "
                f"{self.median_data:.5g} {self.unit}"
            ),
        ]
        if self.kind == "L2":
            lines.append(f"jumps       {self.jump_pixels} pixels with JUMP_DET")
            lines.append(
                "flags       "
                + ", ".join(
                    f"{k} {v:.3%}" for k, v in self.flagged_fraction.items() if v > 0
                )
            )
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
        if self.note:
            lines.append(f"note        {self.note}")
        return "\n".join(lines)


@dataclass
class _Product:
    """The arrays and labels of an L2 or a mosaic."""

    kind: str
    data: np.ndarray
    dq: np.ndarray | None
    coverage: np.ndarray | None
    unit: str
    optical_element: str
    detector: str
    exposure_time: float
    cal_step: dict
    info: dict


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if np.isfinite(value) and value != -999999 else float("nan")


def _load(path):
    import roman_datamodels as rdm
    from roman_datamodels import datamodels as dm

    from romanimpreprocess.datamodels.l2 import read_processinfo

    try:
        opened = rdm.open(path)
    except Exception as err:
        # asdf's own messages do not name the file ("Open requires a filepath, ...")
        raise ValueError(
            f"not a readable ASDF product (truncated or not ASDF?): "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(opened, dm.ImageModel | dm.MosaicModel):
        kind = type(opened).__name__
        opened.close()
        raise TypeError(
            f"is a {kind}; rip-quicklook shows an L2 image (ImageModel) or a "
            f"romancal mosaic (MosaicModel)"
        )
    with opened as model:
        meta = model.meta
        cal_step = dict(meta.cal_step) if "cal_step" in meta else {}
        flux_done = cal_step.get("flux") == "COMPLETE"
        instrument = meta.get("instrument") or {}
        element = str(instrument.get("optical_element", "?"))
        data = np.array(model.data, dtype=np.float64)
        if isinstance(model, dm.MosaicModel):
            exposure = _number((meta.get("coadd_info") or {}).get("exposure_time"))
            coverage = None
            if "context" in model and model.context is not None:
                context = np.asarray(model.context, dtype=np.uint32)
                if context.ndim == 3:
                    # one bit per input exposure: count the bits set
                    coverage = sum(
                        ((context >> np.uint32(k)) & np.uint32(1)).sum(axis=0)
                        for k in range(32)
                    ).astype(int)
            if coverage is None and "weight" in model:
                coverage = (np.asarray(model.weight) > 0).astype(int)
            return _Product(
                kind="mosaic",
                data=data,
                dq=None,
                coverage=coverage,
                unit="MJy/sr",
                optical_element=element,
                detector="mosaic",
                exposure_time=exposure,
                cal_step=cal_step,
                info={},
            )
        exposure = _number((meta.get("exposure") or {}).get("exposure_time"))
        dq = np.array(model.dq, dtype=np.uint32)
        detector = str(instrument.get("detector", "?"))
    info = read_processinfo(path) or {}
    return _Product(
        kind="L2",
        data=data,
        dq=dq,
        coverage=None,
        unit="MJy/sr" if flux_done else "DN/s",
        optical_element=element,
        detector=detector,
        exposure_time=exposure,
        cal_step=cal_step,
        info=info,
    )


def write_png(path, rgb):
    """Write an (ny, nx, 3) uint8 array as a PNG with Pillow (temp file, renamed)."""
    from PIL import Image

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _block(image, max_side, reduce):
    """Block-reduce ``image`` so that its longer side is at most ``max_side``."""
    step = max(1, int(np.ceil(max(image.shape) / max_side)))
    if step == 1:
        return image, 1
    ny, nx = (s - s % step for s in image.shape)
    blocks = image[:ny, :nx].reshape(ny // step, step, nx // step, step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return reduce(blocks, axis=(1, 3)), step


def _limits(values):
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99.5])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _robust_sigma(values):
    """1.4826 x the median absolute deviation (the sky noise; sources ignored)."""
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _asinh_ticks(lo, hi, linear):
    """0 and the powers of ten beyond the linear part, within [lo, hi]."""
    ticks = [0.0]
    power = 10.0 ** np.ceil(np.log10(2 * linear))
    while power <= hi:
        ticks.append(power)
        power *= 10
    power = 10.0 ** np.ceil(np.log10(2 * linear))
    while -power >= lo:
        ticks.insert(0, -power)
        power *= 10
    return ticks


def _stretch(image, lo, hi, linear):
    """asinh stretch of ``image`` to [0, 1], linear within ``linear`` of ``lo``."""
    scaled = np.arcsinh(np.clip(image - lo, 0, None) / linear)
    return np.clip(scaled / np.arcsinh((hi - lo) / linear), 0, 1)


def _image_only_png(product, good, png_path, max_side=1024):
    """The stretched image alone (Pillow): grey, masked pixels red."""
    lo, hi = _limits(product.data[good])
    linear = max(3.0 * _robust_sigma(product.data[good]), 1e-6 * (hi - lo))
    shown = np.where(good, product.data, np.nan)
    image, _ = _block(shown, max_side, np.nanmean)
    grey = np.nan_to_num(_stretch(image, lo, hi, linear), nan=0.0)
    rgb = np.repeat((grey * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    rgb[~np.isfinite(image)] = (200, 40, 40)
    write_png(png_path, rgb[::-1])  # row 0 at the bottom, as in the figure


def _figure(product, good, path, png_path, max_side=1024):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    data = product.data
    ny, nx = data.shape
    extent = (-0.5, nx - 0.5, -0.5, ny - 0.5)
    lo, hi = _limits(data[good])
    noise = _robust_sigma(data[good])
    # asinh: linear within a few sky sigmas (the noise and faint sources visible),
    # logarithmic beyond (bright sources not saturated)
    linear = max(3.0 * noise, 1e-6 * max(abs(lo), abs(hi), 1e-30))
    fig, axes = plt.subplots(
        1, 3, figsize=(17, 5.8), gridspec_kw={"width_ratios": [1, 1, 0.9]}
    )
    exptime = (
        f"{product.exposure_time:.1f} s"
        if np.isfinite(product.exposure_time)
        else "exposure time n/a"
    )
    fig.suptitle(
        f"{os.path.basename(path)}  |  {product.optical_element}  |  "
        f"{product.detector}  |  {exptime}",
        fontsize=13,
    )

    # image, asinh stretch, masked pixels grey
    ax = axes[0]
    shown, step = _block(np.where(good, data, np.nan), max_side, np.nanmean)
    cmap = matplotlib.colormaps["magma"].copy()
    cmap.set_bad("0.6")
    norm = matplotlib.colors.AsinhNorm(linear_width=linear, vmin=lo, vmax=hi)
    im = ax.imshow(
        shown,
        origin="lower",
        extent=extent,
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
    )
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_ticks(_asinh_ticks(lo, hi, linear))
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    bar.ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    bar.set_label(f"data [{product.unit}]")
    title = "image (asinh, 1-99.5 %, linear to 3 sky sigma; grey: masked)"
    if step > 1:
        title += f", {step}x{step} means"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")

    # flags (L2) or coverage (mosaic)
    ax = axes[1]
    if product.dq is not None:
        _flag_panel(
            ax, product.dq, extent, max_side, ListedColormap, BoundaryNorm, Patch
        )
    else:
        coverage = product.coverage
        if coverage is None:
            coverage = np.isfinite(data).astype(int)
        shown_cov, step = _block(coverage, max_side, np.min)
        top = max(int(shown_cov.max()), 1)
        cmap_cov = matplotlib.colormaps["viridis"].resampled(top + 1)
        im = ax.imshow(
            shown_cov,
            origin="lower",
            extent=extent,
            cmap=cmap_cov,
            vmin=-0.5,
            vmax=top + 0.5,
            interpolation="nearest",
        )
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, ticks=range(top + 1))
        bar.set_label("exposures")
        ax.set_title("exposures per pixel (context)", fontsize=10)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")

    # histogram of the good pixels
    ax = axes[2]
    values = data[good]
    if values.size:
        # bins even in asinh(value / linear): the sky's noise and the sources' tail
        median = float(np.median(values))
        h_lo = min(median - 6 * noise, lo)
        h_hi = float(np.percentile(values, 99.99))
        if not h_hi > h_lo:
            h_hi = h_lo + 1.0
        edges = linear * np.sinh(
            np.linspace(np.arcsinh(h_lo / linear), np.arcsinh(h_hi / linear), 151)
        )
        ax.hist(
            values,
            bins=edges,
            histtype="stepfilled",
            color="#4a6fb0",
            alpha=0.75,
            edgecolor="#203a70",
        )
        ax.axvline(median, color="#c03030", lw=1.2, label=f"median {median:.4g}")
        ax.legend(loc="upper right", fontsize=9)
        above = int(np.count_nonzero(values > h_hi))
        ax.set_title(
            f"good pixels: {values.size} of {data.size}; {above} above {h_hi:.3g}",
            fontsize=10,
        )
    else:
        ax.set_title("no good pixel", fontsize=10)
    ax.set_yscale("log")
    ax.set_xscale("asinh", linear_width=linear)
    if values.size:
        ax.set_xticks(_asinh_ticks(h_lo, h_hi, linear))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlim(h_lo, h_hi)
    ax.set_xlabel(f"data [{product.unit}] (asinh axis)")
    ax.set_ylabel("pixels per bin (log)")
    ax.grid(alpha=0.3)

    fig.tight_layout()
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, png_path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def _flag_panel(ax, dq, extent, max_side, ListedColormap, BoundaryNorm, Patch):
    """One colour per flag present (the highest bit set wins), legend with fractions."""
    from roman_datamodels.dqflags import pixel

    present = [f for f in pixel if int(f) and (dq & np.uint32(f)).any()]
    # index 0: no flag; k: the k-th present flag
    index = np.zeros(dq.shape, dtype=np.int16)
    for k, flag in enumerate(present, start=1):
        index[(dq & np.uint32(flag)) != 0] = k
    shown, step = _block(index, max_side, np.max)
    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#ff7f0e",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
        "#393b79",
        "#637939",
        "#8c6d31",
        "#843c39",
        "#7b4173",
        "#3182bd",
    ]
    colours = ["white"] + [palette[k % len(palette)] for k in range(len(present))]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(-0.5, len(colours) + 0.5), cmap.N)
    ax.imshow(
        shown,
        origin="lower",
        extent=extent,
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
    )
    handles = [
        Patch(
            facecolor=colours[k],
            edgecolor="k",
            label=f"{flag.name} {np.mean((dq & np.uint32(flag)) != 0):.3%}",
        )
        for k, flag in enumerate(present, start=1)
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            title="flag (pixels)",
            title_fontsize=8,
            frameon=False,
        )
    title = "DQ flags (highest bit shown)" if present else "DQ: no flag set"
    if step > 1:
        title += f", any in {step}x{step}"
    ax.set_title(title, fontsize=10)


def quicklook(path, png_path=None, *, make_png=True) -> QuicklookSummary:
    """Summarise the L2 or mosaic file ``path``; write ``png_path`` (default next to it).

    Without matplotlib the PNG is the stretched image alone (Pillow) and
    ``summary.note`` says so.
    """
    from roman_datamodels.dqflags import pixel

    from romanimpreprocess.sky.sky import pixel_mask1

    product = _load(path)
    data = product.data
    fractions = {}
    if product.dq is not None:
        masked = pixel_mask1(product.dq)
        for flag in pixel:
            if int(flag) == 0:
                continue
            fractions[flag.name] = float(np.mean((product.dq & np.uint32(flag)) != 0))
    else:
        masked = np.zeros(data.shape, bool)
    good = np.isfinite(data) & ~masked
    note = ""
    if make_png:
        png_path = png_path or os.path.splitext(os.fspath(path))[0] + "_quicklook.png"
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            note = MATPLOTLIB_MISSING + "; wrote the image alone (Pillow)"
            log.warning("%s", note)
            _image_only_png(product, good, png_path)
        else:
            _figure(product, good, os.fspath(path), png_path)
    info = product.info
    median_sky = float(info.get("medsky", np.nan))
    if product.kind == "mosaic" and good.any():
        median_sky = float(np.median(data[good]))
    jumps = 0
    if product.dq is not None:
        jumps = int(np.count_nonzero(product.dq & np.uint32(pixel.JUMP_DET)))
    return QuicklookSummary(
        path=os.fspath(path),
        png=png_path if make_png else None,
        shape=data.shape,
        median_sky=median_sky,
        median_data=float(np.median(data[good])) if good.any() else float("nan"),
        flagged_fraction=fractions,
        jump_pixels=jumps,
        step_times=dict(info.get("step_times") or {}),
        cal_step=product.cal_step,
        kind=product.kind,
        unit=product.unit,
        optical_element=product.optical_element,
        detector=product.detector,
        exposure_time=product.exposure_time,
        note=note,
    )


def main(argv=None):
    """``rip-quicklook PRODUCT.asdf [--png PATH] [--no-png]``."""
    parser = argparse.ArgumentParser(prog="rip-quicklook", description=__doc__)
    parser.add_argument("product", help="L2 ASDF product or romancal mosaic")
    parser.add_argument(
        "--png", default=None, help="PNG path (default <stem>_quicklook.png)"
    )
    parser.add_argument("--no-png", action="store_true", help="text summary only")
    opts = parser.parse_args(argv)
    if not os.path.isfile(opts.product):
        sys.stderr.write(f"rip-quicklook: {opts.product}: file not found\n")
        return 2
    try:
        summary = quicklook(opts.product, opts.png, make_png=not opts.no_png)
    except (OSError, ValueError, TypeError) as err:
        sys.stderr.write(f"rip-quicklook: {opts.product}: {err}\n")
        return 2
    sys.stdout.write(str(summary) + "\n")
    if summary.note:
        sys.stderr.write(f"rip-quicklook: {summary.note}\n")
    return 0


if __name__ == "__main__":
    from romanimpreprocess._startup import start_cli

    start_cli()
    sys.exit(main())
