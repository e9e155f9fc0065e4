"""METHOD min / max / mean / median against GDAL's VRT pixel functions of the same name.

GDAL's reference is a VRT written by hand (gdalbuildvrt's, with each band made a
VRTDerivedRasterBand with a PixelFunctionType), which works on every GDAL that has
the function: min and max since GDAL 3.8, mean and median since 3.11 (tests with
an older GDAL skip, naming the version). Each source keeps its NODATA and the band
its NoDataValue, so GDAL skips invalid samples as we do.

* Float64 output: min, max and median are identical. GDAL's mean is a running mean
  (``m += (x - m) / n``) and ours the float64 sum over the count, so they agree to a
  few ulps (relative 1e-12) but not always bit for bit.
* Integer output: GDAL's pixel functions compute a double and GDALCopyWords converts
  it with ``(T)(x + 0.5)`` after clamping: round half up. We round half to even, so
  the two differ by exactly 1 on ties (mean of an even count, median of an even
  count whose middle values have an odd sum) and nowhere else.
"""

import re

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, run_cli, tile_set

METHODS = ("min", "max", "mean", "median")


def pixel_function_vrt(paths, vrt, function):
    """gdalbuildvrt's VRT of ``paths`` with every band computed by ``function``."""
    gdal.BuildVRT(str(vrt), [str(p) for p in paths])
    with open(vrt, encoding="utf-8") as fh:
        text = fh.read()
    text, bands = re.subn(r'(<VRTRasterBand [^>]*band="\d+")>',
                          r'\1 subClass="VRTDerivedRasterBand">\n    '
                          f"<PixelFunctionType>{function}</PixelFunctionType>", text)
    assert bands >= 1
    with open(vrt, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(vrt)


def gdal_pixel_function(paths, folder, function, output_type):
    """GDAL's result as an array, or skip when this GDAL lacks the pixel function."""
    vrt = pixel_function_vrt(paths, folder / f"{function}.vrt", function)
    out = str(folder / f"gdal-{function}-{output_type}.tif")
    had_exceptions = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        gdal.Translate(out, vrt, outputType=gdal.GetDataTypeByName(output_type))
    except RuntimeError as exc:
        if "not registered" in str(exc):
            pytest.skip(f"GDAL {gdal.__version__} has no '{function}' VRT pixel function")
        raise
    finally:
        if not had_exceptions:
            gdal.DontUseExceptions()
    return read(out)[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """2x2 uint16 tiles overlapping by more than half: 1 to 4 valid samples per pixel."""
    folder = tmp_path_factory.mktemp("pixfun")
    paths = tile_set(folder, seed=12, grid=(2, 2), size=(120, 100), overlap=70, bands=2,
                     dtype="uint16", nodata=0, low=1, high=60000, noise=0.3)
    return folder, paths


def ours(folder, paths, method, dtype):
    out = folder / f"ours-{method}-{dtype}.tif"
    run_cli(*paths, "-o", out, "--method", method, "--dtype", dtype, "--quiet", check=True)
    return read(out)[0]


@pytest.mark.parametrize("method", METHODS)
def test_float_output_equals_gdal_pixel_function(stack, method):
    folder, paths = stack
    want = gdal_pixel_function(paths, folder, method, "Float64")
    got = ours(folder, paths, method, "float64")
    assert got.shape == want.shape
    assert np.count_nonzero(want) > 0.5 * want.size  # mostly valid: the test can fail
    if method == "mean":
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method", METHODS)
def test_integer_output_differs_from_gdal_only_on_ties(stack, method):
    folder, paths = stack
    exact = ours(folder, paths, method, "float64")
    want_float = gdal_pixel_function(paths, folder, method, "Float64")
    want = gdal_pixel_function(paths, folder, method, "UInt16").astype(np.int64)
    got = ours(folder, paths, method, "uint16").astype(np.int64)
    # GDAL's conversion of its double result: round half up.
    np.testing.assert_array_equal(want, np.floor(want_float + 0.5))
    # Ours: round half to even.
    np.testing.assert_array_equal(got, np.rint(exact))
    tie = exact - np.floor(exact) == 0.5
    np.testing.assert_array_equal(got[~tie], want[~tie])
    assert set(np.unique(want[tie] - np.floor(exact[tie]))) <= {0, 1}
    if method in ("mean", "median"):  # ties exist in the data, and half of them differ
        assert np.count_nonzero(got[tie] != want[tie]) > 0
    else:
        assert not tie.any()
