"""Noise-realisation step (legacy NOISE layers, off by default in the pipeline)."""

import gc
import logging
import os
from typing import ClassVar

import asdf
import numpy as np

from romanimpreprocess._memory import return_freed_memory, stop_reusing_freed_memory
from romanimpreprocess.constants import N_CHANNELS, REF_BORDER
from romanimpreprocess.datamodels import (
    MissingReferenceError,
    open_l1,
    resultant_times,
)
from romanimpreprocess.datamodels.l1 import decoded_uint16
from romanimpreprocess.datamodels.l2 import fits_path
from romanimpreprocess.noise import layers as grammar
from romanimpreprocess.noise import noise
from romanimpreprocess.stpipe import RipStep, atomic_save
from romanimpreprocess.utils.atomic import atomic_directory, replace_together
from romanimpreprocess.utils.direct_write import open_direct
from romanimpreprocess.utils.mapped import release_pages

__all__ = ["NoiseStep", "temp_files"]

log = logging.getLogger(__name__)


def _l1_variant(raw, data, amp33):
    """A copy of the L1 model with decoded raw ``data``/``amp33`` (no encoding).

    The big arrays are not copied: the deep copy maps them to the new ones.
    """
    tree = raw._instance
    memo = {}
    for name, new in (("data", data), ("amp33", amp33)):
        if name in tree:
            memo[id(tree[name])] = np.asarray(new, dtype=np.uint16)
    l1 = raw.copy(deepcopy=True, memo=memo)
    l1.data = np.asarray(data, dtype=np.uint16)
    l1.amp33 = np.asarray(amp33, dtype=np.uint16)
    for name in ("reference_read", "reference_amp33"):
        if name in l1:
            delattr(l1, name)
    l1.meta.instrument.data_encoding_offset = 0
    return l1


def _opened_l1(source):
    """The L1 model ``source`` (returned as it is) or the file at that path, opened."""
    return open_l1(source) if isinstance(source, str) else source


def _l1_loader(source):
    """``load_l1()`` of `noise.NoiseInputs`: the L1's decoded resultants, made anew.

    A path is opened and closed at each call (the resultants of an lz4 L1 are
    0.2 GB on a full frame once decompressed; they are not held between layers).
    """

    def load_l1():
        raw = _opened_l1(source)
        try:
            return decoded_uint16(raw)
        finally:
            if raw is not source:
                raw.close()

    return load_l1


def _copied(node):
    """A dict of a reference file with its arrays copied (the file may be closed)."""
    if hasattr(node, "items"):
        return {key: _copied(value) for key, value in node.items()}
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.array(node)
    return node


def _fits_stream(path, n_layers, shape):
    """A FITS primary HDU of ``n_layers`` float32 images written one at a time."""
    from astropy.io import fits

    header = fits.Header(
        [
            ("SIMPLE", True),
            ("BITPIX", -32),
            ("NAXIS", 3),
            ("NAXIS1", int(shape[1])),
            ("NAXIS2", int(shape[0])),
            ("NAXIS3", int(n_layers)),
            ("EXTEND", True),
        ]
    )
    return fits.StreamingHDU(path, header)


def temp_files(temp):
    """The files kept under ``NOISE.TEMP``/``temp``: ``{what: path}``.

    The last R layer's L1 at ``temp`` itself and its calibrations beside it,
    ``<stem>_L2.asdf`` (noisy) and ``<stem>_refL2.asdf`` (the noiseless reference),
    named as the legacy names them.
    """
    stem = os.path.splitext(temp)[0]
    return {"L1": temp, "L2": stem + "_L2.asdf", "reference L2": stem + "_refL2.asdf"}


class NoiseStep(RipStep):
    """Write noise realisations of a calibrated exposure (legacy NOISE layers).

    Input: the L2 model of the exposure (with ``processinfo`` weights, resultant
    times and ``endslice``). Output: an ASDF file ``{config, noise}`` holding one
    (sy, sx) noise image per layer string (grammar in
    `romanimpreprocess.noise.layers`); the L2 model itself is returned unchanged.

    R (read-noise) layers run the calibration again on modified raw ramps: the step
    needs the exposure's L1 and a calibration function. Inside `L1ToL2Pipeline` the
    pipeline provides both (``calibrate_l1`` and ``l1_model`` on the parent); from
    Python set ``step.calibrate`` (a callable L1 model → L2 model) and ``step.l1``
    (an L1 model or path) or give ``l1_input``. A calibration with the attribute
    ``takes_handover`` set gets the L1 model in a one-element list instead and
    takes it out: the step then holds no reference to the noisy ramp while it is
    calibrated. The algorithms are in
    `romanimpreprocess.noise.noise`.
    """

    class_alias = "rip_noise"
    cal_step_key = "noise"
    spec = """
        skip = boolean(default=True)  # off by default inside L1ToL2Pipeline (a standalone run always runs)
        layers = string_list(default=list())  # layer strings (NOISE.LAYER), e.g. RS2, O, Prb2
        seed = integer(default=None, min=0)  # random seed (NOISE.SEED); None = fresh seed, logged and stored
        noise_file = string(default=None)  # output cube (NOISE.OUT); None = <input>_noise.asdf or output_file
        precision = integer(default=32)  # float bits of the stored cube, 16 or 32 (NOISE_PRECISION)
        fits_output = boolean(default=False)  # also write <noise_file stem>_asdf_to.fits (float32)
        temp = string(default=None)  # if set, keep the last R-layer L1/L2 here (NOISE.TEMP naming)
        l1_input = string(default=None)  # L1 file of the exposure (R layers); None = from the model
        legacy_compat = boolean(default=False)  # reproduce the legacy noise model where it differs
        keep_nan = boolean(default=False)  # keep NaN in the layers where a pixel has no slope (default: 0)
        suffix = string(default="noise")  # output file suffix
    """
    reference_file_types: ClassVar = ["gain", "readnoise", "dark"]
    optional_reference_types = ("gain", "readnoise", "dark")

    # Set from Python (not parameters): the calibration of an L1 model for R layers,
    # the exposure's L1, and the tree stored as ``config`` in the output file.
    calibrate = None
    l1 = None
    config_tree = None

    def process(self, dataset):
        """Write the noise cube of ``dataset`` (an L2 model or file); return it."""
        model = self.open_model(dataset)
        dtype = grammar.noise_dtype(self.precision)
        layers = grammar.parse_layers(self.layers)
        seed = self.seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)
            log.info("No noise seed given: drew seed %d", seed)
        rng = np.random.default_rng(seed)
        # Each R layer is a whole calibration beside the step's inputs: buffers kept
        # for reuse (stpipe.core.RipStep.run) fragment the heap here rather than
        # serve the next step (peak +0.27 GB on a full frame, same CPU time).
        stop_reusing_freed_memory()

        # The gain, read-noise and dark files the layers read stay open (memory-
        # mapped, apart from the reference cache, which the layers' calibrations
        # close) for the whole step; the layers give their pages back after each use.
        self._mapped = []
        try:
            inputs = self._inputs(model, layers)
            path = self._noise_path(model)
            self._write(self._layers(layers, inputs, rng), dtype, path, seed, model)
            # the layers' views of the mapped arrays go before the files close
            del inputs
        finally:
            for ref in self._mapped:
                ref.close()
            self._mapped = []
        self.record_cal_step(model, "COMPLETE")
        return model

    def _layers(self, layers, inputs, rng):
        """Yield the noise layers one at a time, in order, from the one stream ``rng``.

        Each `noise.make_noise_cube` call makes one layer; the calls share ``rng``,
        which only the layers consume, so the layers are those of one call with every
        layer (same bits). The R layers' noiseless reference is calibrated once
        (`_array_calibration`). One layer is in memory at a time, not the cube.
        """
        not_finite_total = 0
        for index, layer in enumerate(layers):
            log.info("Noise layer %d of %d: %r", index + 1, len(layers), layer.text)
            one = noise.make_noise_cube(
                [layer],
                inputs,
                rng,
                legacy_compat=self.legacy_compat,
                border=REF_BORDER,
                n_channels=N_CHANNELS,
            )[0]
            if not self.keep_nan:
                # Pixels without a slope (NaN in the calibrations the layers come
                # from) get 0, as the L2 data there.
                not_finite = ~np.isfinite(one)
                if not_finite.any():
                    one[not_finite] = 0.0
                    not_finite_total += int(not_finite.sum())
                del not_finite
            yield one
            # not held while the next layer is made
            del one
        if not_finite_total:
            log.info(
                "%d non-finite noise value(s) set to 0 (keep_nan keeps them)",
                not_finite_total,
            )

    def save_model(self, model, *args, **kwargs):
        """The step's product is the noise cube (written by `process`), not the L2."""
        log.info("Step %s does not save the (unchanged) L2 model", self.name)

    # ------------------------------------------------------------------ inputs
    def _require(self, model, reftype, why, fields=None):
        """The ``reftype`` file, opened for this step alone (closed when it ends)."""
        ref = self.load_reference(model, reftype, fields=fields, cache=False)
        if ref is None:
            raise MissingReferenceError(
                self._missing_reference_message(reftype) + f" ({why})"
            )
        self._mapped.append(ref)
        return ref

    @staticmethod
    def _processinfo(model):
        """``processinfo`` of the model, or of the L2 file it was read from."""
        if "processinfo" in model:
            return model["processinfo"]
        tree = getattr(getattr(model, "_asdf", None), "tree", None) or {}
        if "processinfo" in tree:
            model["processinfo"] = tree["processinfo"]
            return model["processinfo"]
        return {}

    def _inputs(self, model, layers):
        info = self._processinfo(model)
        exposure = model.meta.exposure
        read_pattern = [list(map(int, frames)) for frames in exposure.read_pattern]
        frame_time = float(exposure.frame_time)
        meta = info.get("meta") or {}
        tbar = meta.get("tbar")
        if tbar is None:
            tbar, _, _ = resultant_times(read_pattern, frame_time)
        start = 1 if info.get("exclude_first", True) else 0
        weights = info.get("weights")
        inputs = noise.NoiseInputs(
            data=np.asarray(model.data, dtype=np.float32),
            data_withsky=self._data_withsky(model, info),
            read_pattern=read_pattern,
            frame_time=frame_time,
            tbar=np.asarray(tbar, dtype=np.float64),
            weights=None if weights is None else np.asarray(weights, np.float64),
            start=start,
        )
        sci = (slice(REF_BORDER, -REF_BORDER), slice(REF_BORDER, -REF_BORDER))
        if any(layer.pseudo_poisson or layer.poisson_resample for layer in layers):
            if info.get("endslice") is None:
                raise ValueError(
                    "O and P layers need processinfo.endslice: run the calibration "
                    "with slice output (legacy SLICEOUT: True)"
                )
            if weights is None:
                # checked before any layer is made (an R layer first costs a
                # calibration)
                raise ValueError(
                    "O and P layers need the ramp-fit weights K (processinfo.weights); "
                    "the likelihood ramp fit has none: use the optimal (legacy) fit"
                )
            inputs.endslice = np.asarray(info["endslice"])
            gain = self._require(model, "gain", "O and P layers use the gain", ["data"])
            # as stored (memory-mapped): the layers convert it to float64 when used
            inputs.gain = gain.data[sci]
            release_pages(gain.data)
        if any(layer.read for layer in layers):
            self._read_inputs(model, info, inputs, layers)
        return inputs

    @staticmethod
    def _data_withsky(model, info):
        for source in (model, info):
            if "data_withsky" in source and source["data_withsky"] is not None:
                return np.asarray(source["data_withsky"], dtype=np.float32)
        log.info("No data_withsky in the L2: the sky was not subtracted, using data")
        return np.asarray(model.data, dtype=np.float32)

    def _read_inputs(self, model, info, inputs, layers):
        """The R layers' inputs: mapped reference arrays, the L1 re-read when needed.

        Nothing full-frame is held while the layers are calibrated: the read-noise
        and dark arrays stay memory-mapped (their pages given back after each use,
        `noise.make_noise_cube`), the L1's decoded resultants are made again for
        each ``Ra`` layer (`load_l1`) instead of kept, and the L1 the ramps go into
        holds only the exposure's metadata and amp33 (docs/noise/index.rst, "Memory").
        """
        why = "R layers regenerate read noise"
        read = self._require(model, "readnoise", why)
        dark = self._require(model, "dark", why + " on the dark ramp", ["data"])
        anc = read.get("anc") or {}
        inputs.read_noise = read.data
        inputs.reset_noise = read.get("resetnoise")
        inputs.c_pink = float(anc.get("C_PINK", 0.0))
        inputs.u_pink = float(anc.get("U_PINK", 0.0))
        amp33 = read.get("amp33")
        inputs.amp33_model = None if amp33 is None else _copied(amp33)
        inputs.dark = dark.data
        for array in (inputs.read_noise, inputs.reset_noise):
            if array is not None:
                release_pages(array)

        source = self._l1_source(info)
        raw = _opened_l1(source)
        try:
            _, inputs.l1_amp33 = decoded_uint16(raw, planes=False)
            # The L1 the layers' ramps go into: the exposure's metadata, with a
            # zero-stride stand-in for the resultants each layer replaces.
            placeholder = np.broadcast_to(np.uint16(0), np.shape(raw.data))
            template = _l1_variant(raw, placeholder, inputs.l1_amp33)
        finally:
            if raw is not source:
                raw.close()
        del raw
        if any(layer.read and layer.read_add for layer in layers):
            inputs.load_l1 = _l1_loader(source)
        inputs.calibrate = self._array_calibration(template)

    def _l1_source(self, info):
        """The exposure's L1: a model, or the path of its file."""
        source = self.l1 if self.l1 is not None else self.l1_input
        if source is None and self.parent is not None:
            source = getattr(self.parent, "l1_model", None)
        if source is None:
            source = (info.get("config") or {}).get("IN")
        if source is None:
            raise ValueError(
                "R layers need the exposure's L1: give l1_input=<path> (or set "
                "step.l1 from Python)"
            )
        if isinstance(source, str | os.PathLike):
            return os.fspath(source)
        return source

    def _calibration_function(self):
        if self.calibrate is not None:
            return self.calibrate
        parent_function = getattr(self.parent, "calibrate_l1", None)
        if parent_function is not None:
            return parent_function
        raise ValueError(
            "R layers re-run the calibration on modified L1 ramps: set "
            "step.calibrate (L1 model -> L2 model), or run the step inside "
            "L1ToL2Pipeline"
        )

    def _array_calibration(self, raw):
        """``calibrate(ramp) -> L2 data`` for `make_noise_cube` (``NoiseInputs.calibrate``).

        The ramp's arrays go into an L1 model (a copy of ``raw`` without its
        resultants), which is handed to the calibration: a calibration that takes
        a handover (``takes_handover``: `L1ToL2Pipeline.calibrate_l1`,
        ``gen_noise_image``'s) gets it in a one-element list and takes it out, so
        nothing else holds the ramp while the calibration runs. The noiseless
        reference (``reference=True``, the same dark ramp for every R layer) is
        calibrated once and its data kept for the next layers.
        """
        function = self._calibration_function()
        temp = self.temp
        kept = {}

        def calibrate(ramp, *, reference=False):
            data, amp33 = ramp
            ramp.clear()
            if reference and "reference" in kept:
                return kept["reference"]
            handover = [_l1_variant(raw, data, amp33)]
            del data, amp33
            files = temp_files(temp) if temp else None
            if files:
                atomic_save(handover[0], files["L1"])
            # the ramp's temporaries (full-frame float32 planes) and models no
            # longer used (the L1 read for the template or an Ra layer: cycles,
            # freed at a collection) were freed, but the step keeps freed buffers
            # (stpipe.core.RipStep.run): they leave now, before the calibration's
            # own peak
            gc.collect()
            return_freed_memory()
            if getattr(function, "takes_handover", False):
                result = function(handover)
            else:
                result = function(handover.pop())
            handover.clear()
            if files:
                atomic_save(result, files["reference L2" if reference else "L2"])
            out = np.asarray(result.data, dtype=np.float32)
            # the rest of the L2 (err, variances, dq: 0.2 GB on a full frame) goes
            # now, not at the next garbage collection, and what the calibration
            # freed leaves the process (the step runs with freed buffers kept)
            del result
            gc.collect()
            return_freed_memory()
            if reference:
                kept["reference"] = out
            return out

        return calibrate

    # ------------------------------------------------------------------ output
    def _noise_path(self, model):
        if self.noise_file:
            return os.path.abspath(os.path.expanduser(self.noise_file))
        if self.output_file:
            return os.path.abspath(os.path.expanduser(self.output_file))
        name = getattr(model.meta, "filename", None) or "exposure.asdf"
        stem = os.path.splitext(os.path.basename(str(name)))[0]
        for known in ("_cal", "_l2", "_uncal"):
            stem = stem.removesuffix(known)
        directory = self.output_dir or os.getcwd()
        return os.path.join(directory, f"{stem}_{self.suffix or 'noise'}.asdf")

    def _write(self, layers, dtype, path, seed, model):
        """Write the layers (an iterator) to ``path`` as they come, and the FITS copy.

        The ASDF file's ``noise`` is an asdf stream block (read back as an ordinary
        (nlayer, sy, sx) array, asdf's standard): each layer is appended as soon as
        it is made, so the cube is never in memory. Both files are written in a
        temporary directory and renamed into place together at the end, the ASDF
        last (as `romanimpreprocess.datamodels.l2.write_l2`).
        """
        from asdf.tags.core import Stream

        config = self.config_tree
        if config is None:
            config = {
                "layers": list(self.layers),
                "seed": int(seed),
                "precision": int(self.precision),
                "legacy_compat": bool(self.legacy_compat),
                "input": str(getattr(model.meta, "filename", "") or ""),
            }
        shape = np.shape(model.data)
        targets = [path]
        if self.fits_output:
            targets.insert(0, fits_path(path))
        count = 0
        with atomic_directory(path) as tmpdir:
            temporaries = [os.path.join(tmpdir, os.path.basename(t)) for t in targets]
            tree = {"config": config, "noise": Stream(list(shape), dtype)}
            # the layers (a full-frame plane each, 8 for the survey driver) go to
            # the disk around the page cache where it can (utils.direct_write)
            with open_direct(temporaries[-1]) or open(temporaries[-1], "wb") as out:
                asdf.AsdfFile(tree).write_to(out)
                fits_copy = None
                if self.fits_output:
                    fits_copy = _fits_stream(temporaries[0], len(self.layers), shape)
                for layer in layers:
                    out.write(np.ascontiguousarray(layer, dtype=dtype).tobytes())
                    if fits_copy is not None:
                        # float32, as the legacy's copy of a float16 cube too
                        fits_copy.write(np.asarray(layer, dtype=dtype).astype(">f4"))
                    count += 1
                    # the next layer is made while this loop waits: not held then
                    del layer
                if fits_copy is not None:
                    fits_copy.close()
            replace_together(temporaries, targets, tmpdir)
        log.info("Wrote %d noise layers %s to %s", count, np.dtype(dtype), path)
        if self.fits_output:
            log.info("Wrote FITS copy %s", targets[0])
