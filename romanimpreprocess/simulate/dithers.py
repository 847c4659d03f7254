"""Dithered sets: several exposures of one field with one source catalogue.

Above both `romanimpreprocess.simulate.field` (pointing, catalogue, dithers) and
`romanimpreprocess.simulate.simulate` (one exposure), which it combines.
"""

import logging
import math
import os
from dataclasses import dataclass, replace

import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.simulate.field import SourceCatalog, _gwcs, dither_offsets
from romanimpreprocess.simulate.simulate import wcs_header, write_simulation

__all__ = ["DitheredSet", "make_catalog", "write_dithered"]

log = logging.getLogger(__name__)


def make_catalog(
    config,
    offsets,
    n_sources,
    *,
    seed=None,
    flux_range=(5.0, 300.0),
    extended_fraction=0.2,
):
    """A catalogue covering the union of the dithered footprints of ``config``.

    Positions are drawn uniformly in the pixel frame of the undithered exposure (over
    the science area extended by the offsets and 16 pixels) and put on the sky with
    its WCS; fluxes log-uniform in ``flux_range`` µJy; ``extended_fraction`` of the
    sources have an intrinsic sigma of 0.1-0.3 arcsec.
    """
    rng = np.random.default_rng([config.seed if seed is None else seed, 23])
    ns = config.size - 2 * REF_BORDER
    header = wcs_header(replace(config, dither=(0.0, 0.0)), ns)
    dx = [o[0] for o in offsets]
    dy = [o[1] for o in offsets]
    pad = 16
    x = rng.uniform(min(dx) - pad, ns - 1 + max(dx) + pad, n_sources)
    y = rng.uniform(min(dy) - pad, ns - 1 + max(dy) + pad, n_sources)
    ra, dec = _gwcs(header, ns)(x, y, with_bounding_box=False)
    lo, hi = flux_range
    flux = np.exp(rng.uniform(np.log(lo), np.log(hi), n_sources))
    sigma = np.where(
        rng.random(n_sources) < extended_fraction, rng.uniform(0.1, 0.3, n_sources), 0
    )
    return SourceCatalog(np.asarray(ra), np.asarray(dec), flux, sigma)


def write_dithered(
    out_dir, config, count=3, *, step=None, n_sources=None, catalog=None
):
    """Simulate ``count`` dithered exposures of one field; return their paths.

    Every exposure gets the same calibration (``config.seed``), its own noise
    (``noise_seed = i``) and pointing (`dither_offsets`), and the one catalogue
    (``catalog``, else `make_catalog`), written as ``catalog.asdf`` in ``out_dir``.
    Exposure ``i`` is written to ``out_dir/exp<i>`` by `write_simulation`.
    """
    ns = config.size - 2 * REF_BORDER
    if config.ra is None or config.roll is None:
        # Fix the seed's random pointing so that every exposure shares it.
        header = wcs_header(replace(config, dither=(0.0, 0.0)), ns)
        pa = math.degrees(math.atan2(header["CD1_2"], header["CD2_2"]))
        config = replace(
            config,
            ra=header["CRVAL1"] if config.ra is None else config.ra,
            dec=header["CRVAL2"] if config.dec is None else config.dec,
            roll=pa if config.roll is None else config.roll,
        )
    step = 0.1 * ns if step is None else float(step)
    offsets = dither_offsets(count, step)
    if catalog is None:
        if n_sources is None:
            n_sources = max(ns * ns // 800, 8)
        catalog = make_catalog(config, offsets, n_sources)
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    catalog_path = catalog.write(os.path.join(out_dir, "catalog.asdf"))
    paths = []
    for i, offset in enumerate(offsets):
        exposure = replace(config, dither=offset, catalog=catalog, noise_seed=i)
        paths.append(write_simulation(os.path.join(out_dir, f"exp{i}"), exposure))
        log.info("Dither %d/%d: offset (%.3f, %.3f) px", i + 1, count, *offset)
    return DitheredSet(catalog=catalog_path, exposures=paths, offsets=offsets)


@dataclass
class DitheredSet:
    """Files of `write_dithered`: the catalogue and each exposure's `SimulationPaths`."""

    catalog: str
    exposures: list
    offsets: list
