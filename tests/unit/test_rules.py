"""Compositing rules against independent references: rasterio.merge, numpy, hand-checked arrays."""

import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from helpers import read, run_cli, smooth_field, write_raster
from streaming_mosaic.core import composite as comp

RES = 10.0
ORIGIN = (500000.0, 5000000.0)
EXTENT = (300, 260)  # not a multiple of any window size used below
MANY_WINDOWS = ("--chunk", "48", "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16")


class Tiles:
    """Written tiles plus the same pixels stacked on the output grid (the numpy reference)."""

    def __init__(self, paths, data, valid):
        self.paths = paths
        self.data = data      # (n, bands, H, W) input dtype, nodata where invalid
        self.valid = valid    # (n, bands, H, W) bool


def random_tiles(folder, seed, dtype, bands, nodata, low, high, n=5, extent=EXTENT,
                 quantum=None):
    """``n`` tiles at random pixel offsets in ``extent`` (overlaps up to ``n`` deep) with
    nodata collars and holes, some holes in one band only. Valid values never equal nodata.
    ``quantum`` rounds float values to multiples of it (exact float32 sums)."""
    rng = np.random.default_rng(seed)
    width, height = extent
    dtype = np.dtype(dtype)
    stack = np.zeros((n, bands, height, width), dtype)
    valid = np.zeros((n, bands, height, width), bool)
    paths = []
    for i in range(n):
        w = int(rng.integers(width * 0.45, width * 0.7))
        h = int(rng.integers(height * 0.45, height * 0.7))
        if i == 0:
            x, y = 0, 0
        elif i == 1:
            x, y = width - w, height - h
        else:
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        data = np.stack([smooth_field(rng, h, w, low, high, dtype) for _ in range(bands)])
        if quantum:
            data = (np.round(data / quantum) * quantum).astype(dtype)
        ok = np.ones(data.shape, bool)
        ok[:, :, :2] = False  # a nodata collar
        for _ in range(4):
            b = int(rng.integers(0, bands + 1))
            sel = slice(None) if b == bands else slice(b, b + 1)
            y0, x0 = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
            ok[sel, y0:y0 + int(rng.integers(5, 20)), x0:x0 + int(rng.integers(5, 20))] = False
        if nodata is not None:
            if not (isinstance(nodata, float) and math.isnan(nodata)):
                data[data == dtype.type(nodata)] = dtype.type(nodata) + 1
            data[~ok] = nodata
        path = str(folder / f"t{seed}_{i}.tif")
        write_raster(path, data, (ORIGIN[0] + x * RES, RES, 0, ORIGIN[1] - y * RES, 0, -RES),
                     nodata=nodata)
        paths.append(path)
        stack[i, :, y:y + h, x:x + w] = data
        valid[i, :, y:y + h, x:x + w] = ok if nodata is not None else True
    return Tiles(paths, stack, valid)


def numpy_reference(method, data, valid, out_dtype):
    """The rule computed directly from the stacked inputs (no project code)."""
    n = len(data)
    wide = np.where(valid, data.astype(np.float64), 0.0)
    count = valid.sum(axis=0)
    if method in ("first", "last"):
        out = np.zeros(data.shape[1:], np.float64)
        done = np.zeros(data.shape[1:], bool)
        for i in (range(n) if method == "first" else range(n - 1, -1, -1)):
            take = valid[i] & ~done
            out[take] = data[i][take]
            done |= take
    elif method == "min":
        out = np.where(valid, data.astype(np.float64), np.inf).min(axis=0)
    elif method == "max":
        out = np.where(valid, data.astype(np.float64), -np.inf).max(axis=0)
    elif method == "sum":
        out = wide.sum(axis=0)
    elif method == "count":
        out = count.astype(np.float64)
    elif method == "mean":
        out = wide.sum(axis=0) / np.maximum(count, 1)
    out = np.where(count > 0, out, 0.0)
    out_dtype = np.dtype(out_dtype)
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(out_dtype), count > 0


# dtype, bands, nodata, low, high, float quantum. Ranges keep any sum of 5 inputs inside the
# type and away from nodata, since rasterio adds in the output type and masks `== nodata`.
CASES = {
    "uint8-1band": ("uint8", 1, 0, 1, 50, None),
    "uint16-3bands": ("uint16", 3, 0, 1, 3000, None),
    "int16-2bands": ("int16", 2, -9999, -1000, 3000, None),
    "float32-4bands": ("float32", 4, -9999.0, -50.0, 50.0, 0.25),
    "float32-nan": ("float32", 1, float("nan"), -50.0, 50.0, 0.25),
}


def make_case(tmp_path, case):
    dtype, bands, nodata, low, high, quantum = CASES[case]
    return random_tiles(tmp_path, zlib.crc32(case.encode()) % 1000, dtype, bands, nodata,
                        low, high, quantum=quantum)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["first", "last", "min", "max", "sum", "count"])
def test_rule_is_pixel_identical_to_rasterio_merge(tmp_path, method, case):
    rasterio_merge = pytest.importorskip("rasterio.merge")
    tiles = make_case(tmp_path, case)
    out = tmp_path / "mosaic.tif"
    run_cli(*tiles.paths, "-o", out, "--method", method, *MANY_WINDOWS, "--quiet", check=True)
    got, gt, nd = read(out)
    want, transform = rasterio_merge.merge(tiles.paths, method=method)
    assert gt == transform.to_gdal()
    assert got.shape == want.shape
    covered = tiles.valid.any(axis=0)
    assert covered.any() and (~covered).any()
    assert (tiles.valid.sum(axis=0) >= 3).any()  # the overlaps are deep enough to matter
    if method == "count":
        # Count: unsigned, no nodata; rasterio leaves its nodata where no input is valid.
        assert got.dtype == np.uint8
        assert nd is None
        np.testing.assert_array_equal(got[covered], want[covered].astype(np.uint8))
        assert not got[~covered].any()
        return
    assert got.dtype == want.dtype
    want_nd = CASES[case][2]
    assert nd == want_nd or (math.isnan(nd) and math.isnan(want_nd))
    np.testing.assert_array_equal(got, want)  # NaN positions must match too


@pytest.mark.parametrize("case", CASES)
def test_mean_matches_numpy_mean_of_valid_inputs(tmp_path, case):
    tiles = make_case(tmp_path, case)
    out = tmp_path / "mean.tif"
    run_cli(*tiles.paths, "-o", out, "--method", "mean", *MANY_WINDOWS, "--quiet", check=True)
    got, _gt, nd = read(out)
    want, covered = numpy_reference("mean", tiles.data, tiles.valid, got.dtype)
    assert got.dtype == tiles.data.dtype
    want[~covered] = CASES[case][2]
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind in "iu":
        # Exact halves occur, so round-half-up or truncation would fail this test.
        exact = np.where(tiles.valid, tiles.data.astype(np.float64), 0).sum(0)
        frac = exact / np.maximum(tiles.valid.sum(0), 1) % 1
        assert (frac == 0.5).sum() > 10


@pytest.mark.parametrize("dtype,nodata,low,high", [
    ("uint8", 0, 100, 250),
    # Sums clipped to -32768 equal nodata: they are written as -32767, not as holes.
    ("int16", -32768, -20000, 20000),
])
def test_sum_saturates_to_the_output_type(tmp_path, dtype, nodata, low, high):
    tiles = random_tiles(tmp_path, 7, dtype, 2, nodata, low, high)
    out = tmp_path / "sum.tif"
    proc = run_cli(*tiles.paths, "-o", out, "--method", "sum", *MANY_WINDOWS, check=True)
    got, _gt, nd = read(out)
    want, covered = numpy_reference("sum", tiles.data, tiles.valid, dtype)
    info = np.iinfo(dtype)
    exact = np.where(tiles.valid, tiles.data.astype(np.int64), 0).sum(0)
    assert (exact[covered] > info.max).any()
    if dtype == "int16":
        low_hit = covered & (exact <= info.min)
        assert low_hit.any()
        want[low_hit] = info.min + 1
        assert f"{int(low_hit.sum())} valid pixel(s) equal to the nodata value" in proc.stderr
    want[~covered] = nodata
    assert nd == nodata
    np.testing.assert_array_equal(got, want)


def test_sum_keeps_values_past_the_input_type_with_a_wider_data_type(tmp_path):
    tiles = random_tiles(tmp_path, 8, "uint8", 1, 0, 100, 250)
    out = tmp_path / "sum.tif"
    run_cli(*tiles.paths, "-o", out, "--method", "sum", "--dtype", "uint16", "--quiet",
            check=True)
    got, _gt, nd = read(out)
    assert got.dtype == np.uint16 and nd == 0
    want, covered = numpy_reference("sum", tiles.data, tiles.valid, np.uint16)
    assert (want[covered] > 600).any()
    np.testing.assert_array_equal(got, want)


def test_count_output_widens_past_255_inputs(tmp_path):
    path = str(tmp_path / "one.tif")
    write_raster(path, np.full((20, 20), 9, np.uint8), (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES),
                 nodata=0)
    out = tmp_path / "count.tif"
    run_cli(*[path] * 300, "-o", out, "--method", "count", "--quiet", check=True)
    got, _gt, nd = read(out)
    assert got.dtype == np.uint16
    assert nd is None
    assert (got == 300).all()


@pytest.mark.parametrize("method", ["last", "first", "min", "max", "mean", "sum", "count",
                                    "feather"])
def test_rule_output_does_not_depend_on_window_size(tmp_path, method):
    tiles = random_tiles(tmp_path, 11, "int16", 2, -9999, -1000, 3000, n=4)
    outs = []
    for name, args in (("w256", ("--chunk", "256")), ("w48", MANY_WINDOWS),
                       ("whole", ("--chunk", "512"))):
        out = tmp_path / f"{name}.tif"
        run_cli(*tiles.paths, "-o", out, "--method", method, "--feather-distance", "20",
                *args, "--quiet", check=True)
        outs.append(read(out))
    for got, gt, nd in outs[1:]:
        assert (gt, nd) == outs[0][1:]
        np.testing.assert_array_equal(got, outs[0][0])
    if method != "feather":
        want, covered = numpy_reference(method, tiles.data, tiles.valid, outs[0][0].dtype)
        if method != "count":
            want[~covered] = -9999
        np.testing.assert_array_equal(outs[0][0], want)


# -- The pure rule functions on small hand-checkable stacks ------------------------------

A = np.array([[[1, 5, 9, 0]]], np.uint8)
B = np.array([[[4, 2, 9, 0]]], np.uint8)
C = np.array([[[7, 8, 3, 0]]], np.uint8)
VA = np.array([[[True, True, False, False]]])
VB = np.array([[[True, False, True, False]]])
VC = np.array([[[True, True, True, False]]])


@pytest.mark.parametrize("method,expected", [
    ("last", [7, 8, 3, 99]),
    ("first", [1, 5, 9, 99]),
    ("min", [1, 5, 3, 99]),
    ("max", [7, 8, 9, 99]),
    ("sum", [12, 13, 12, 99]),
    ("mean", [4, 6, 6, 99]),   # 12/3, 13/2 = 6.5 -> 6 (half to even), 12/2
    ("count", [3, 2, 2, 99]),
])
def test_composite_rule_on_hand_checked_stack(method, expected):
    got = comp.composite(method, [A, B, C], [VA, VB, VC], nodata=99)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, 0], expected)


def test_composite_all_valid_inputs_need_no_mask():
    got = comp.composite("min", [A, B, C], [None, None, None])
    np.testing.assert_array_equal(got[0, 0], [1, 2, 3, 0])
    got = comp.composite("last", [A, B, C], [None, VB, None])
    np.testing.assert_array_equal(got[0, 0], [7, 8, 3, 0])


def test_composite_without_nodata_writes_zero_where_nothing_is_valid():
    got = comp.composite("max", [A, B], [VA & False, VB & False])
    np.testing.assert_array_equal(got, np.zeros_like(A))


def test_composite_mean_rounds_half_to_even():
    vals = [np.array([[[1, 2, 3, 4]]], np.int16), np.array([[[2, 3, 4, 5]]], np.int16)]
    got = comp.composite("mean", vals, [None, None])
    np.testing.assert_array_equal(got[0, 0], [2, 2, 4, 4])  # 1.5 2.5 3.5 4.5


def test_composite_sum_saturates_instead_of_wrapping():
    big = np.array([[[200, 100, 1]]], np.uint8)
    got = comp.composite("sum", [big, big], [None, None])
    np.testing.assert_array_equal(got[0, 0], [255, 200, 2])
    neg = np.array([[[-30000, 30000]]], np.int16)
    got = comp.composite("sum", [neg, neg], [None, None])
    np.testing.assert_array_equal(got[0, 0], [-32768, 32767])


def test_composite_float32_with_nan_nodata():
    nan = np.nan
    a = np.array([[[1.5, nan, nan, 4.0]]], np.float32)
    b = np.array([[[2.5, 3.0, nan, nan]]], np.float32)
    valids = [~np.isnan(a), ~np.isnan(b)]
    for method, expected in [("last", [2.5, 3.0, nan, 4.0]), ("first", [1.5, 3.0, nan, 4.0]),
                             ("min", [1.5, 3.0, nan, 4.0]), ("max", [2.5, 3.0, nan, 4.0]),
                             ("sum", [4.0, 3.0, nan, 4.0]), ("mean", [2.0, 3.0, nan, 4.0])]:
        got = comp.composite(method, [a, b], valids, nodata=nan)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got[0, 0], np.array(expected, np.float32), err_msg=method)
    got = comp.composite("count", [a, b], valids)
    assert got.dtype.kind == "u"
    np.testing.assert_array_equal(got[0, 0], [2, 1, 0, 1])


def test_composite_promotes_mixed_types():
    small = np.array([[[250, 7]]], np.uint8)
    signed = np.array([[[-300, 1000]]], np.int16)
    got = comp.composite("max", [small, signed], [None, None])
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got[0, 0], [250, 1000])
    got = comp.composite("sum", [small, signed], [None, None])
    np.testing.assert_array_equal(got[0, 0], [-50, 1007])


@pytest.mark.parametrize("dtype,nodata,moved_to", [
    ("uint8", 5, 6), ("uint8", 255, 254), ("int16", -32768, -32767),
    ("float32", 2.0, np.nextafter(np.float32(2.0), np.float32(3.0))),
])
def test_composite_moves_valid_values_off_nodata(dtype, nodata, moved_to):
    value = np.array([[[nodata, 3, nodata]]], dtype)
    valid = np.array([[[True, True, False]]])
    got = comp.composite("last", [value], [valid], nodata=nodata)
    np.testing.assert_array_equal(got[0, 0], np.array([moved_to, 3, nodata], dtype))


def test_composite_count_with_nodata_moves_counts_equal_to_it():
    got = comp.composite("count", [A, B, C], [VA, VB, VC], nodata=2)
    np.testing.assert_array_equal(got[0, 0], [3, 3, 3, 2])


def test_composite_feather_is_the_weighted_mean_and_exact_where_one_input_is_valid():
    a = np.array([[[10.0, 10.0, 10.0]]], np.float32)
    b = np.array([[[40.0, 40.0, 40.0]]], np.float32)
    wa = np.array([[1.0, 0.25, 0.5]], np.float32)
    wb = np.array([[0.5, 0.5, 0.5]], np.float32)
    vb = np.array([[[True, True, False]]])
    got = comp.composite("feather", [a, b], [None, vb], weights=[wa, wb])
    np.testing.assert_allclose(got[0, 0], [20.0, 30.0, 10.0], rtol=1e-6)
    assert got[0, 0, 2] == 10.0


def test_rule_pictures_tool_writes_one_small_picture_per_rule(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    from PIL import Image
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "tools", "rule_pictures.py")
    subprocess.run([sys.executable, tool, "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for rule in list(comp.RULES) + ["inputs"]:
        path = tmp_path / f"{rule}.png"
        with Image.open(path) as image:
            assert image.size == (240, 240)
        assert path.stat().st_size < 60 * 1024
    assert (tmp_path / "all.png").stat().st_size < 60 * 1024
