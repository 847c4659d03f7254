"""Dark-decay subtraction step."""

import logging
import math
import re
from typing import ClassVar

from romanimpreprocess.dark_decay import dark_decay
from romanimpreprocess.datamodels import ReferenceFileError
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan

__all__ = ["DarkDecayStep"]

log = logging.getLogger(__name__)

_DETECTOR = re.compile(r"^WFI(0[1-9]|1[0-8])$")


class DarkDecayStep(RipStep):
    """Subtract the decaying dark signal left by the reset from every resultant.

    The detector's ``amplitude`` and ``time_constant`` come from the ``decay_table`` of
    the ``darkdecaysignal`` reference file; each resultant loses the mean over its
    frames of ``amplitude * exp(-t / time_constant)`` at the per-pixel read times of
    the actual frame shape. Without a reference file the step is skipped. The
    algorithm is in `romanimpreprocess.dark_decay.dark_decay`.
    """

    class_alias = "rip_dark_decay"
    cal_step_key = "dark_decay"
    spec = """
        suffix = string(default="dark_decay")  # output file suffix
    """
    reference_file_types: ClassVar = ["darkdecaysignal"]
    optional_reference_types = ("darkdecaysignal",)

    def process(self, dataset):
        """Return the `RampModel` with the dark-decay signal subtracted."""
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The signal of every resultant (whole frame), subtracted band by band."""
        detector = str(model.meta.instrument.get("detector", ""))
        if not _DETECTOR.match(detector):
            raise ValueError(
                f"step {self.name}: unknown detector {detector!r} in "
                f"meta.instrument.detector; expected WFI01..WFI18"
            )
        ref = self.load_reference(model, "darkdecaysignal", fields=["decay_table"])
        if ref is None:
            return _DarkDecayPlan(step=self, terms=None, skipped=True)
        amplitude, time_constant = _decay_parameters(ref, detector)
        exposure = model.meta.exposure
        read_pattern = [list(r) for r in exposure.read_pattern]
        frame_time = float(exposure.frame_time)
        log.info(
            "Dark decay for %s: amplitude %.6g DN, time constant %.6g s, "
            "frame time %.6g s",
            detector,
            amplitude,
            time_constant,
            frame_time,
        )
        if len(read_pattern) != model.data.shape[0]:
            raise ValueError(
                f"read pattern has {len(read_pattern)} resultants, data "
                f"{model.data.shape[0]}"
            )
        terms = None
        if amplitude == 0:
            # The signal is 0 everywhere: subtracting it would change no value.
            log.info("Dark decay amplitude is 0 for %s: nothing to subtract", detector)
        else:
            terms = dark_decay.dark_decay_signal(
                model.data.shape[1:],
                read_pattern,
                frame_time,
                int(detector[3:]),
                amplitude,
                time_constant,
            )
        return _DarkDecayPlan(step=self, terms=terms, skipped=False)


class _DarkDecayPlan(BandPlan):
    def __init__(self, step, terms, skipped):
        super().__init__()
        self.step = step
        self.terms = terms
        self.skipped = skipped

    def apply(self, band):
        if self.terms is not None:
            dark_decay.subtract_signal(band.data, self.terms, band.rows)

    def finish(self, model):
        self.terms = None  # the float64 map is not held for the rest of the run
        if self.skipped:
            return self.step.skip_model(
                model, reason="no darkdecaysignal reference file"
            )
        self.step.record_cal_step(model, "COMPLETE")
        return model


def _decay_parameters(ref, detector):
    """``(amplitude, time_constant)`` of ``detector`` from the decay table, checked."""
    table = ref.decay_table
    entry = table.get(detector)
    where = f"roman.decay_table.{detector}"
    if entry is None:
        raise ReferenceFileError(
            ref.reftype,
            ref.path,
            f"no entry for detector {detector} (has: {', '.join(sorted(table))})",
            field=where,
        )
    values = []
    for key in ("amplitude", "time_constant"):
        value = entry.get(key) if hasattr(entry, "get") else None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ReferenceFileError(
                ref.reftype,
                ref.path,
                f"expected a number, got {value!r}",
                f"{where}.{key}",
            ) from None
        values.append(value)
    amplitude, time_constant = values
    if not math.isfinite(amplitude):
        raise ReferenceFileError(
            ref.reftype, ref.path, "amplitude is not finite", f"{where}.amplitude"
        )
    if not (math.isfinite(time_constant) and time_constant > 0):
        raise ReferenceFileError(
            ref.reftype,
            ref.path,
            f"time constant must be a positive finite number, got {time_constant}",
            f"{where}.time_constant",
        )
    return amplitude, time_constant
