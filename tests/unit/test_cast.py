"""composite.cast from floats to every integer type, against its definition in numpy terms."""

import numpy as np
import pytest

from streaming_mosaic.core.composite import cast

INT_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def defined(values, dtype):
    """Round half to even, NaN -> 0, infinities and overflows clipped to the range."""
    info = np.iinfo(dtype)
    # In float64: float32(2**31 - 1) is 2**31, which a float32 clip (numpy 2) would wrap.
    rounded = np.nan_to_num(np.rint(values.astype(np.float64)), nan=0.0)
    with np.errstate(invalid="ignore"):
        out = np.clip(rounded, info.min, info.max).astype(dtype)
    if np.dtype(dtype).itemsize == 8:
        out[rounded >= float(info.max)] = info.max
    return out


@pytest.mark.parametrize("dtype", INT_TYPES)
@pytest.mark.parametrize("src", ["float32", "float64"])
def test_float_to_int_cast_rounds_half_even_clips_and_zeroes_nan(dtype, src):
    rng = np.random.default_rng(4)
    values = np.concatenate([
        rng.normal(0, 1e3, 500), rng.normal(0, 1e12, 200), np.arange(-6, 6) + 0.5,
        [np.nan, np.inf, -np.inf, 2.0 ** 63, -2.0 ** 63, 2.0 ** 64, 1e300, -1e300, -0.4, 0.5]
    ]).astype(src)
    keep = values.copy()
    got = cast(values, dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, defined(values, dtype))
    np.testing.assert_array_equal(values, keep)  # the input is not changed
