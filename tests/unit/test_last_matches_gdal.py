"""METHOD=last is pixel-identical to gdalbuildvrt + gdal_translate of the same inputs."""

import zlib

import numpy as np
import pytest

from helpers import read, run_cli, tile_set, vrt_reference


@pytest.mark.parametrize("dtype,bands", [("uint8", 1), ("uint16", 3), ("int16", 2), ("float32", 4)])
@pytest.mark.parametrize("chunk", ["256", "0"])
def test_last_is_pixel_identical_to_gdal_vrt(tmp_path, dtype, bands, chunk):
    nodata = -9999 if dtype in ("int16", "float32") else 0
    seed = zlib.crc32(f"{dtype}-{bands}".encode()) % 1000
    paths = tile_set(tmp_path, seed=seed, grid=(3, 3), size=(300, 260),
                     overlap=40, bands=bands, dtype=dtype, nodata=nodata)
    out = tmp_path / "mosaic.tif"
    run_cli(*paths, "-o", out, "--chunk", chunk, "--quiet", check=True)
    ref = vrt_reference(paths, tmp_path / "ref.tif")
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(ref)
    assert gt == want_gt
    assert got.shape == want.shape
    assert nd == want_nd == nodata
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
