"""NODATA_INPUT on inputs without a nodata flag: the holes are flagged and filled with it,
as ``gdalwarp -srcnodata`` does without ``-dstnodata``."""

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, run_cli, write_raster

RES = 10.0


def scene(folder, dtype="int16", marker=-32000):
    """Three tiles without nodata leaving a corner uncovered, each with a frame of ``marker``."""
    rng = np.random.default_rng(4)
    paths = []
    for i, (x, y) in enumerate([(0, 0), (70, 0), (0, 60)]):
        data = rng.integers(-500, 500, (2, 80, 90)).astype(dtype)
        data[:, :, :4] = marker
        data[1, 30:40, 30:40] = marker  # a hole in one band
        paths.append(write_raster(folder / f"t{i}.tif", data,
                                  (x * RES, RES, 0, 2000 - y * RES, 0, -RES)))
    return paths


@pytest.mark.parametrize("dtype,marker", [("int16", -32000), ("float32", -9999.5)])
def test_holes_are_flagged_with_nodata_input_as_gdalwarp_srcnodata(tmp_path, dtype, marker):
    paths = scene(tmp_path, dtype, marker)
    out = tmp_path / "out.tif"
    proc = run_cli(*paths, "-o", out, "--nodata-input", marker, "--chunk", "64",
                   "--co", "BLOCKXSIZE=32", "--co", "BLOCKYSIZE=32", check=True)
    assert "set NODATA_INPUT" not in proc.stderr, proc.stderr
    got, gt, nd = read(out)
    ref = str(tmp_path / "ref.tif")
    # Later inputs on top, like METHOD=last; each band's holes its own, as here.
    gdal.Warp(ref, paths, srcNodata=marker, warpOptions=["UNIFIED_SRC_NODATA=NO"],
              outputBounds=(0, 2000 - 140 * RES, 160 * RES, 2000), xRes=RES, yRes=RES)
    want, want_gt, want_nd = read(ref)
    assert nd == want_nd == marker
    assert gt == want_gt and got.shape == want.shape == (2, 140, 160)
    np.testing.assert_array_equal(got, want)
    assert (got == marker).sum() > 60 * 70  # the uncovered corner, in both bands


def test_nodata_output_and_count_still_decide_over_nodata_input(tmp_path):
    paths = scene(tmp_path)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--nodata-input", -32000, "--nodata-output", 7, "--quiet",
            check=True)
    got, _gt, nd = read(out)
    assert nd == 7 and (got == 7).sum() >= 2 * 60 * 70 and not (got == -32000).any()
    count = tmp_path / "count.tif"
    run_cli(*paths, "-o", count, "--method", "count", "--nodata-input", -32000, "--quiet",
            check=True)
    got, _gt, nd = read(count)
    assert nd is None and (got == 0).sum() >= 2 * 60 * 70  # no input there: a count of 0


def test_a_nodata_input_the_output_cannot_hold_is_not_flagged_and_said(tmp_path):
    paths = [write_raster(tmp_path / f"u{i}.tif", np.full((30, 40), 5 + i, np.uint8),
                          (i * 300.0, RES, 0, 1000 - i * 200.0, 0, -RES)) for i in range(2)]
    out = tmp_path / "out.tif"
    proc = run_cli(*paths, "-o", out, "--nodata-input", -1, check=True)
    got, _gt, nd = read(out)
    assert nd is None and (got == 0).any()
    assert any(line.startswith("warning:") and "NODATA_INPUT" in line and "-1" in line
               for line in proc.stderr.splitlines()), proc.stderr


def test_the_nodata_advice_is_given_only_without_nodata_input(tmp_path):
    paths = scene(tmp_path)
    out = tmp_path / "out.tif"
    proc = run_cli(*paths, "-o", out, check=True)
    assert "set NODATA_INPUT" in proc.stderr
    proc = run_cli(*paths, "-o", out, "--nodata-input", -32000, check=True)
    assert "set NODATA_INPUT" not in proc.stderr and "no nodata value" not in proc.stderr
