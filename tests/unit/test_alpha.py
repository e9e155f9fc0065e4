"""ADD_ALPHA: an alpha band, 255 where any input is valid, as gdalbuildvrt -addalpha."""

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, run_cli, write_raster

ORIGIN = (500000.0, 5000000.0)


def _rgb_tiles(tmp_path):
    """Two RGB tiles without nodata (zeros inside them are data) with a gap between them."""
    rng = np.random.default_rng(2)
    paths = []
    for i, x in enumerate((0, 70)):  # columns 0-49 and 70-119: a 20 px gap, 20 px higher
        data = rng.integers(0, 256, (3, 40 + 20 * i, 50), dtype=np.uint8)
        data[:, :5, :5] = 0  # black pixels that are valid data
        paths.append(write_raster(tmp_path / f"rgb{i}.tif", data,
                                  (ORIGIN[0] + x * 10, 10, 0, ORIGIN[1], 0, -10)))
    return paths


def _reference(tmp_path, paths):
    vrt = str(tmp_path / "ref.vrt")
    gdal.BuildVRT(vrt, paths, addAlpha=True)
    ref = str(tmp_path / "ref.tif")
    gdal.Translate(ref, vrt)
    return read(ref)[0]


@pytest.mark.parametrize("method", ["last", "first", "mean", "median", "feather"])
@pytest.mark.parametrize("cog", [False, True])
def test_alpha_marks_exactly_the_covered_pixels(tmp_path, method, cog):
    paths = _rgb_tiles(tmp_path)
    want = _reference(tmp_path, paths)
    out = tmp_path / "mosaic.tif"
    run_cli(*paths, "-o", out, "--add-alpha", "--method", method, *(["--cog"] if cog else []),
            "--chunk", "32", "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16", "--quiet",
            check=True)
    got = read(out)[0]
    assert got.shape == want.shape == (4, 60, 120)
    alpha = np.zeros((60, 120), np.uint8)
    alpha[:40, :50] = 255
    alpha[:, 70:] = 255
    np.testing.assert_array_equal(got[3], alpha)
    np.testing.assert_array_equal(want[3], alpha)
    np.testing.assert_array_equal(got[:3], want[:3])  # no overlap: every rule gives the values
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    assert ds.GetRasterBand(1).GetMaskFlags() & gdal.GMF_ALPHA


def test_without_add_alpha_no_alpha_band_and_a_hint(tmp_path):
    paths = _rgb_tiles(tmp_path)
    out = tmp_path / "mosaic.tif"
    proc = run_cli(*paths, "-o", out, check=True)
    assert read(out)[0].shape[0] == 3
    assert "ADD_ALPHA" in proc.stderr
