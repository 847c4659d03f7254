"""The compiled float16 cast of the L2 against numpy's, for all 2**32 float32 values.

`romanimpreprocess.datamodels.float16_kernels.clip_to_half_bits` writes the bits of
``np.clip(value, -65504, 65504, out=float16)`` in integer arithmetic. The test suite
checks every exponent and rounding case (tests/datamodels/test_l2.py); this script
checks every float32 bit pattern, 65536 pieces of 65536 (about 3 minutes on two
cores, most of it numpy's own cast), and prints the mismatches (0 expected).

    python bench/check_float16_cast.py
"""

import sys
import time

import numpy as np

from romanimpreprocess.datamodels.float16_kernels import clip_to_half_bits

LIMIT = np.float32(np.finfo(np.float16).max)
PIECES = 16  # blocks of 2**16 patterns per call


def main():
    limit_bits = LIMIT.view(np.uint32)
    no_flags = np.zeros((0, 0), np.uint32)
    mismatches = 0
    began = time.perf_counter()
    with np.errstate(all="ignore"):
        for high in range(0, 1 << 16, PIECES):
            bits = np.arange(high << 16, (high + PIECES) << 16, dtype=np.uint64)
            values = bits.astype(np.uint32).view(np.float32).reshape(-1, 256)
            expected = np.empty(values.shape, np.float16)
            np.clip(values, -LIMIT, LIMIT, out=expected, casting="unsafe")
            got = np.empty(values.shape, np.uint16)
            clip_to_half_bits(
                values.view(np.uint32), got, no_flags, np.uint32(1), limit_bits,
                np.uint32(0), False,
            )  # fmt: skip
            differ = got != expected.view(np.uint16)
            if differ.any():
                mismatches += int(differ.sum())
                first = values.view(np.uint32)[differ][0]
                print(f"float32 0x{first:08x}: mismatch", file=sys.stderr)
    print(
        f"{mismatches} mismatches in 2**32 values, {time.perf_counter() - began:.0f} s"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
