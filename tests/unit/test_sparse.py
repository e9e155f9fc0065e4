"""CREATION_OPTIONS SPARSE_OK=TRUE: windows without valid pixels take no room on disk."""

import os

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, run_cli, vrt_reference, write_raster
from streaming_mosaic.core import engine
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options

RES = 1.0
FAR = 8000  # px between the two tiles: 8,100 x 8,100 px of output, 64 MB as Byte


def far_tiles(folder, nodata=0):
    rng = np.random.default_rng(9)
    paths = []
    for i, (x, y) in enumerate([(0, 0), (FAR, FAR)]):
        data = rng.integers(1, 250, (100, 100)).astype(np.uint8)
        if nodata is not None:
            data[:10, :10] = nodata  # a hole inside a tile too
        paths.append(write_raster(folder / f"far{i}.tif", data,
                                  (x * RES, RES, 0, (FAR + 100 - y) * RES, 0, -RES),
                                  nodata=nodata))
    return paths


def assert_like_gdal(out, paths, folder):
    ref = vrt_reference(paths, folder / "ref.tif")
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(ref)
    assert (gt, nd) == (want_gt, want_nd)
    np.testing.assert_array_equal(got, want)
    return nd


@pytest.mark.parametrize("compress", ["none", "lzw"])
@pytest.mark.parametrize("nodata", [0, None])
def test_sparse_ok_leaves_empty_windows_unwritten(tmp_path, compress, nodata):
    paths = far_tiles(tmp_path, nodata)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--compress", compress, "--co", "SPARSE_OK=TRUE", "--quiet",
            check=True)
    # Two 512 px tiles hold data; the other 254 take no room.
    assert os.stat(out).st_size < (2 * 512 * 512 if compress == "none" else 0) + 100_000
    nd = assert_like_gdal(out, paths, tmp_path)
    assert nd == nodata
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(1).ReadAsArray(4000, 4000, 1, 1)[0, 0] == 0


def test_sparse_ok_with_cog_and_overviews(tmp_path):
    paths = far_tiles(tmp_path)
    for finish in ("--cog", "--overviews"):
        out = tmp_path / f"out{finish}.tif"
        run_cli(*paths, "-o", out, finish, "--co", "SPARSE_OK=TRUE", "--quiet", check=True)
        assert os.stat(out).st_size < 2_000_000, finish
        assert_like_gdal(out, paths, tmp_path)
        ds = gdal.Open(str(out))
        assert ds.GetRasterBand(1).GetOverviewCount() > 0
        ds = None
        assert not [n for n in os.listdir(tmp_path) if ".partial" in n]


def test_sparse_ok_resumes_to_the_same_small_mosaic(tmp_path):
    paths = far_tiles(tmp_path)
    out = tmp_path / "out.tif"
    opts = dict(inputs=paths, output=str(out), creation_options="SPARSE_OK=TRUE|COMPRESS=NONE",
                chunk_size=1024, threads=2, checkpoint_seconds=0.0)
    seen = {"windows": 0}

    def progress(event):
        text = event.text
        seen["windows"] += text.startswith("window ")

    with pytest.raises(Cancelled):
        engine.run(Options(**opts), progress=progress, cancel=lambda: seen["windows"] >= 20)
    partial = str(out) + ".partial"
    assert os.path.exists(partial) and os.stat(partial).st_size < 1_000_000
    result = engine.run(Options(resume=True, **opts))
    assert result.resumed_from == 20 and result.windows > 40
    assert os.stat(out).st_size < 1_000_000
    assert_like_gdal(out, paths, tmp_path)
