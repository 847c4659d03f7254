"""Read our products with the survey team's own tools (second half of `make downstream`).

Runs in a Python >= 3.12 venv with ``pyimcom==1.2.1`` and
``roman-hlis-l2-driver==0.2.0`` (not in ours). Input: the directory written by
``bench/downstream_make.py``. Each check calls the package's own reading function as
its users (the PyIMCOM coadd, the driver's destriping set-up, outlier flagging and
full-field export) call it, and compares what it read with the files; the results go
to ``<dir>/downstream_summary.json`` and stdout. Exit status 1 if any check fails.
"""

import argparse
import json
import os
import shutil
import sys
import traceback
import types
import warnings

import asdf
import numpy as np
from astropy.io import fits

RESULTS = {}


def check(name):
    def wrap(function):
        def run(*args, **kwargs):
            try:
                detail = function(*args, **kwargs)
                RESULTS[name] = {"ok": True, "detail": detail}
            except Exception as err:  # report and continue with the other checks
                RESULTS[name] = {
                    "ok": False,
                    "detail": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(limit=4),
                }
            status = "ok  " if RESULTS[name]["ok"] else "FAIL"
            print(f"[{status}] {name}: {RESULTS[name]['detail']}", flush=True)

        return run

    return wrap


def _pyimcom_config(directory, filter_index, obsfile, layers):
    from pyimcom.config import Config

    cfg = {
        "OBSFILE": obsfile,
        "INDATA": [directory, "L2_2506"],
        "FILTER": filter_index,
        "INPSF": [directory, "L2_2506", 6],
        "EXTRAINPUT": [f"noise,{layer}" for layer in layers],
        "CTR": [9.5, -44.0],
        "BLOCK": 1,
        "OUTSIZE": [2, 40, 0.025],
        "OUT": os.path.join(directory, "imcom_out"),
    }
    return Config(json.dumps(cfg))


def _obs_table(path, obsid, filter_index, ra, dec):
    """The observation table PyIMCOM reads (row = observation id)."""
    n = obsid + 1
    cols = [
        fits.Column(name="ra", format="D", array=np.full(n, ra)),
        fits.Column(name="dec", format="D", array=np.full(n, dec)),
        fits.Column(name="pa", format="D", array=np.zeros(n)),
        fits.Column(name="date", format="D", array=np.full(n, 61100.5)),
        fits.Column(name="exptime", format="D", array=np.full(n, 54.72)),
        fits.Column(name="filter", format="J", array=np.full(n, filter_index)),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
        path, overwrite=True
    )
    with fits.open(path) as f:
        return f[1].data.copy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="directory of downstream_make.py")
    parser.add_argument("--obsid", type=int, default=8)
    parser.add_argument("--sca", type=int, default=7)
    parser.add_argument("--filter", default="H158")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import pyimcom
    import roman_hlis_l2_driver
    from pyimcom.config import Settings as Stn

    directory = os.path.abspath(args.dir)
    tag = f"{args.filter}_{args.obsid}_{args.sca}"
    l2 = os.path.join(directory, f"sim_L2_{tag}.asdf")
    noise_path = l2[:-5] + "_noise.asdf"
    mask_path = l2[:-5] + "_mask.fits"
    l1 = os.path.join(directory, f"sim_L1_{tag}.asdf")
    idsca = (args.obsid, args.sca)
    filter_index = Stn.RomanFilters.index(args.filter)
    with asdf.open(l2) as af:
        data = np.array(af["roman"]["data"])
    with asdf.open(noise_path) as af:
        noise = np.array(af["noise"])
        layers = list(af["config"]["NOISE"]["LAYER"])
    with fits.open(mask_path) as f:
        mask = f["MASK"].data.astype(bool)
    versions = {
        "pyimcom": pyimcom.__version__,
        "roman_hlis_l2_driver": roman_hlis_l2_driver.__version__,
        "python": sys.version.split()[0],
    }
    print("versions:", versions, flush=True)
    obsdata = _obs_table(
        os.path.join(directory, "obs.fits"), args.obsid, filter_index, 9.5, -44.0
    )
    cfg = _pyimcom_config(
        directory, filter_index, os.path.join(directory, "obs.fits"), layers[:2]
    )
    blk = types.SimpleNamespace(cfg=cfg, obsdata=obsdata)
    state = {}

    # ---------------------------------------------------------------- PyIMCOM
    @check("pyimcom.coadd.InImage")
    def inimage():
        from pyimcom.coadd import InImage

        image = InImage(blk, idsca)
        assert image.exists_, f"InImage did not find {image.infile}"
        assert image.infile == l2, (image.infile, l2)
        state["inimage"] = image
        return (
            f"found {os.path.basename(image.infile)}, WCS {type(image.inwcs).__name__}"
        )

    @check("pyimcom.layer.get_all_data (science + 2 noise layers)")
    def all_data():
        from pyimcom.layer import get_all_data

        image = state["inimage"]
        get_all_data(image)
        cube = image.indata
        assert cube.shape == (3, Stn.sca_nside, Stn.sca_nside), cube.shape
        np.testing.assert_array_equal(cube[0], data)
        np.testing.assert_array_equal(cube[1], noise[0])
        np.testing.assert_array_equal(cube[2], noise[1])
        assert np.isfinite(cube).all()
        return (
            f"cube {cube.shape}, science = L2 data, layers {layers[:2]} = noise file, "
            f"std of layers {float(np.std(cube[1])):.4g}, {float(np.std(cube[2])):.4g} DN/s"
        )

    @check("pyimcom.layer.Mask.load_mask_from_maskfile")
    def load_mask():
        from pyimcom.layer import Mask

        good = Mask.load_mask_from_maskfile(cfg, obsdata, idsca)
        np.testing.assert_array_equal(good, ~mask)
        return f"{int((~good).sum())} masked pixels ({(~good).mean():.4%}), = MASK HDU"

    @check("pyimcom.wcsutil.PyIMCOM_WCS vs the truth WCS")
    def pyimcom_wcs():
        from astropy.wcs import WCS
        from pyimcom.wcsutil import PyIMCOM_WCS

        with asdf.open(l2) as af:
            wcs = PyIMCOM_WCS(af["roman"]["meta"]["wcs"])
        with open(l1[:-5] + "_asdf_wcshead.txt") as f:
            header = fits.Header.fromstring(f.read())
        truth = WCS(header)
        rng = np.random.default_rng(1)
        xy = rng.uniform(0, Stn.sca_nside - 1, (50, 2))
        ours = np.array(wcs.all_pix2world(xy, 0))
        # the header's CRPIX is 0-based (FITSWCS convention): origin 1 in astropy
        expected = truth.all_pix2world(xy, 1)
        dra = (ours[:, 0] - expected[:, 0] + 180) % 360 - 180
        dra *= np.cos(np.radians(expected[:, 1]))
        sep = np.hypot(dra, ours[:, 1] - expected[:, 1]) * 3600 / 0.11
        assert sep.max() < 0.01, sep.max()
        return f"max offset from the truth WCS {sep.max():.2e} pixel over 50 points"

    # ------------------------------------------------------- roman-hlis-l2-driver
    @check("destripe_setup._setup_one_file (no noise layer)")
    def setup_plain():
        from roman_hlis_l2_driver.destripe_interface.destripe_setup import (
            _setup_one_file,
        )

        prefix = os.path.join(directory, "destripe_")
        _setup_one_file(((l2, tag), prefix, Stn.sca_nside, None, 4, False))
        with fits.open(prefix + tag + ".fits") as f:
            np.testing.assert_array_equal(f[0].data, data)
            np.testing.assert_array_equal(f[1].data.astype(bool), mask)
            state["destripe_image"] = np.array(f[0].data)
            return f"{prefix + tag}.fits: HDU0 = data, HDU1 {f[1].name} = mask"

    @check("destripe_setup._setup_one_file (noise layer 0)")
    def setup_noise():
        from roman_hlis_l2_driver.destripe_interface.destripe_setup import (
            _setup_one_file,
        )

        prefix = os.path.join(directory, "destripe_noise0_")
        _setup_one_file(((l2, tag), prefix, Stn.sca_nside, 0, 4, False))
        with fits.open(prefix + tag + ".fits") as f:
            np.testing.assert_allclose(f[0].data, data + noise[0], rtol=0, atol=1e-4)
            return f"HDU0 = data + {layers[0]} layer, finite: {bool(np.isfinite(f[0].data).all())}"

    @check("PyIMCOM destriping object mask (imdestripe.apply_object_mask) non-empty")
    def object_mask():
        from pyimcom.imdestripe import apply_object_mask

        image = state["destripe_image"].astype(np.float32)
        _, masked = apply_object_mask(image, threshold_m=0, threshold_c=0.3)
        count = int(masked.sum())
        assert count > 0, "empty object mask"
        return f"{count} pixels ({count / image.size:.3%}); image median {np.median(image):.4g}"

    @check("outlier_flagging._load_img_wcs")
    def load_img_wcs():
        from roman_hlis_l2_driver.outliers.outlier_flagging import _load_img_wcs

        image = np.zeros((Stn.sca_nside, Stn.sca_nside), np.float32)
        wcs = _load_img_wcs((l2, image))
        np.testing.assert_array_equal(image, data)
        ra, dec = wcs.all_pix2world(np.array([[2043.5, 2043.5]]), 0)[0]
        return f"image = data; centre at RA {ra:.5f}, Dec {dec:.5f}"

    @check("outlier_flagging._load_mask")
    def load_mask_driver():
        from roman_hlis_l2_driver.outliers.outlier_flagging import _load_mask

        out = np.zeros((Stn.sca_nside, Stn.sca_nside), bool)
        _load_mask((mask_path, "MASK", np.uint8(1), out))
        np.testing.assert_array_equal(out, mask)
        return f"{int(out.sum())} masked pixels = MASK HDU"

    @check("outlier_flagging.update_files (on a copy)")
    def update():
        from roman_hlis_l2_driver.outliers.outlier_flagging import update_files

        copy_dir = os.path.join(directory, "update_copy")
        os.makedirs(copy_dir, exist_ok=True)
        target = os.path.join(copy_dir, os.path.basename(l2))
        shutil.copy(l2, target)
        shutil.copy(mask_path, target[:-5] + "_mask.fits")
        extra = np.zeros((1, Stn.sca_nside, Stn.sca_nside), bool)
        extra[0, 100:110, 200:210] = True
        update_files({"files": [target], "mask": extra})
        with asdf.open(target) as af:
            written = np.array(af["mask"])
            assert af["processinfo"]["outlier_complete"] is True
            np.testing.assert_array_equal(af["roman"]["data"], data)
        np.testing.assert_array_equal(written & 1, mask.astype(np.uint8))
        np.testing.assert_array_equal((written >> 1) & 1, extra[0].astype(np.uint8))
        import roman_datamodels as rdm

        with rdm.open(target) as model:
            model.validate()
        return "mask bits 0 (L2 mask) and 1 (outliers) written; file re-opens and validates"

    @check("fullfov.FullFoVImage")
    def fullfov():
        from roman_hlis_l2_driver.fullfovexport.fullfov import FullFoVImage

        infile = os.path.join(directory, f"sim_L2_{args.filter}_{args.obsid}_{{}}.asdf")
        maskfile = infile[:-5] + "_mask.fits"
        image = FullFoVImage(infile, maskfile=maskfile)
        hdu = image.hdulist[f"WFI{args.sca:02d}"]
        assert hdu.header["ISVALID"] and hdu.header["HASMASK"] and hdu.header["HASWCS"]
        for key in ("EQVGAIN", "BKGNDVAR"):
            assert np.isfinite(hdu.header[key]), (key, hdu.header[key])
        mjd = image.hdulist[0].header["MJD"]
        assert 50000 < mjd < 80000, mjd
        out = os.path.join(directory, "fullfov.fits")
        image.to_file(out, overwrite=True)
        others = sum(
            1
            for h in image.hdulist[1:]
            if h.name != f"WFI{args.sca:02d}" and h.header["ISVALID"]
        )
        return (
            f"WFI{args.sca:02d} valid, masked, WCS max err {hdu.header['MAXWCSER']:.2e} pix; "
            f"EQVGAIN {hdu.header['EQVGAIN']:.4g}, BKGNDVAR {hdu.header['BKGNDVAR']:.4g}; "
            f"MJD {mjd:.5f}, TSTART {image.hdulist[0].header['TSTART']}; "
            f"{others} other SCA valid (only one made)"
        )

    for function in (
        inimage,
        all_data,
        load_mask,
        pyimcom_wcs,
        setup_plain,
        setup_noise,
        object_mask,
        load_img_wcs,
        load_mask_driver,
        update,
        fullfov,
    ):
        function()
    summary = {"versions": versions, "results": RESULTS}
    with open(os.path.join(directory, "downstream_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    failed = [name for name, r in RESULTS.items() if not r["ok"]]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
