"""Real-world inputs read without silent pixel errors, on every read path.

The three read paths of core/specs.py: ``direct`` (aligned with the output grid),
``vrt`` (same CRS, resampled) and ``warp`` (another CRS). References are numpy on
the source arrays and GDAL's own tools (gdalbuildvrt + gdal_translate, gdalwarp)
run on inputs whose validity numpy has already applied.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal, osr

from helpers import read, run_cli, smooth_field, srs_wkt, vrt_reference, write_raster
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan
from streaming_mosaic.core.specs import WARP_ERROR

RES = 10.0
ORIGIN = (500000.0, 5000000.0)
# UTM 33N moved by (-99996.3, -2.5) m: a reprojection that is a pure translation
# by a fraction of a pixel, so the warper resamples (and its approximate
# transformer is exact, as the transformation is linear).
SHIFTED_UTM = ("+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=400003.7 +y_0=-2.5 "
               "+datum=WGS84 +units=m +no_defs")
SHIFT = (-99996.3, -2.5)
GARBAGE = 9999


def shifted_wkt():
    srs = osr.SpatialReference()
    srs.ImportFromProj4(SHIFTED_UTM)
    return srs.ExportToWkt()


def write_tile(path, data, geotransform, wkt, nodata=None, mask=None, alpha=None,
               internal=False):
    """A GeoTIFF with nodata, and optionally a per-dataset mask (.msk file, or
    internal) and an alpha band."""
    bands = data.shape[0] + (alpha is not None)
    types = {np.dtype("uint8"): gdal.GDT_Byte, np.dtype("uint16"): gdal.GDT_UInt16,
             np.dtype("float32"): gdal.GDT_Float32,
             np.dtype("int64"): getattr(gdal, "GDT_Int64", None),
             np.dtype("uint64"): getattr(gdal, "GDT_UInt64", None)}
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], bands,
                                              types[data.dtype], ["TILED=YES"])
    ds.SetGeoTransform(geotransform)
    ds.SetProjection(wkt)
    for b in range(data.shape[0]):
        if nodata is not None:
            ds.GetRasterBand(b + 1).SetNoDataValue(nodata)
        ds.GetRasterBand(b + 1).WriteArray(data[b])
    if alpha is not None:
        ds.GetRasterBand(bands).SetColorInterpretation(gdal.GCI_AlphaBand)
        ds.GetRasterBand(bands).WriteArray(alpha)
    if mask is not None:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES" if internal else "NO")
        try:
            ds.CreateMaskBand(gdal.GMF_PER_DATASET)
        finally:
            gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
        ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    ds = None
    return str(path)


def warp_reference(paths, out, **options):
    """gdalwarp of the inputs with the streaming warp's transformer error."""
    ds = gdal.Warp(str(out), [str(p) for p in paths], errorThreshold=WARP_ERROR, **options)
    assert ds is not None, gdal.GetLastErrorMsg()
    return str(out)


def messy_tile(seed, shape=(2, 70, 80)):
    """Data (nodata 0 in a collar and in a hole of the last band only), a mask and an alpha
    band with their own holes, and garbage (GARBAGE) under them that is not nodata."""
    rng = np.random.default_rng(seed)
    data = np.stack([smooth_field(rng, *shape[1:], 100, 3000, "uint16")
                     for _ in range(shape[0])])
    data[:, :3, :] = 0
    data[-1, 30:42, 10:25] = 0
    mask = np.full(shape[1:], 255, np.uint8)
    mask[10:30, 40:60] = 0
    mask[50:, :12] = 0
    alpha = np.full(shape[1:], 255, np.uint8)
    alpha[40:62, 45:70] = 0
    return data, mask, alpha


MASKS = {
    "msk": dict(mask=True),
    "internal-mask": dict(mask=True, internal=True),
    "alpha": dict(alpha=True),
    "msk-and-alpha": dict(mask=True, alpha=True),
    "per-band-masks": dict(per_band=True),  # a VRT input with a <MaskBand> per band
}
PATHS = {  # (read path, resampling)
    "direct": ("direct", "nearest"),
    "vrt-nearest": ("vrt", "nearest"),
    "vrt-bilinear": ("vrt", "bilinear"),
    "vrt-cubic": ("vrt", "cubic"),
    "vrt-lanczos": ("vrt", "lanczos"),
    "warp-nearest": ("warp", "nearest"),
    "warp-bilinear": ("warp", "bilinear"),
    "warp-cubic": ("warp", "cubic"),
}


def placed(path_id):
    """Geotransform and WKT of a tile at grid pixel (20, 10) for the given read path."""
    path, _resampling = PATHS[path_id]
    x0, y0, wkt = ORIGIN[0] + 20 * RES, ORIGIN[1] - 10 * RES, srs_wkt(32633)
    if path == "vrt":
        x0, y0 = x0 + 0.3 * RES, y0 - 0.4 * RES
    if path == "warp":
        x0, y0, wkt = x0 + SHIFT[0], y0 + SHIFT[1], shifted_wkt()
    return (x0, RES, 0, y0, 0, -RES), wkt


def reference(path_id, paths, out, got_gt, shape, warper=False):
    """GDAL's own mosaic of ``paths`` on the output grid: gdalwarp when reprojected, or
    resampled with a kernel and ``warper``, else gdalbuildvrt + gdal_translate."""
    path, resampling = PATHS[path_id]
    if path == "warp" or (resampling != "nearest" and warper):
        h, w = shape
        bounds = (got_gt[0], got_gt[3] + h * got_gt[5], got_gt[0] + w * got_gt[1], got_gt[3])
        warp_reference(paths, out, dstSRS="EPSG:32633", outputBounds=bounds, xRes=RES,
                       yRes=RES, resampleAlg=resampling)
    else:
        vrt_reference(paths, out, resampleAlg="near" if resampling == "nearest" else resampling)
    return read(out)


def per_band_vrt(folder, raw, masks):
    """A VRT over ``raw`` whose band b has its own mask band (masks[b], a GeoTIFF)."""
    ds = gdal.Open(raw)
    gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    ds = None
    names = [write_tile(folder / f"mask{b}.tif", m[None], gt, wkt) for b, m in enumerate(masks)]
    gdal.Translate(str(folder / "top.vrt"), raw, format="VRT")
    parts = (folder / "top.vrt").read_text().split("</VRTRasterBand>")
    for b, name in enumerate(names):
        parts[b] += (f"<MaskBand><VRTRasterBand dataType=\"Byte\"><SimpleSource><SourceFilename "
                     f"relativeToVRT=\"0\">{name}</SourceFilename><SourceBand>1</SourceBand>"
                     "</SimpleSource></VRTRasterBand></MaskBand>")
    (folder / "top.vrt").write_text("</VRTRasterBand>".join(parts))
    ds = gdal.Open(str(folder / "top.vrt"))
    assert ds.GetRasterBand(2).GetMaskFlags() == 0  # per band
    assert (ds.GetRasterBand(2).GetMaskBand().ReadAsArray() == 0).sum() == (masks[1] == 0).sum()
    ds = None
    return str(folder / "top.vrt")


@pytest.mark.parametrize("kind", list(MASKS))
@pytest.mark.parametrize("path_id", list(PATHS))
def test_nodata_and_mask_both_apply_on_every_read_path(tmp_path, kind, path_id):
    """An input with a nodata value and a mask (.msk, internal, alpha band, both, or a
    mask per band): a pixel is valid where it is not nodata and not masked, and
    resampling kernels skip both. Reference: GDAL's tools on the same input with
    numpy's validity applied (masked pixels set to nodata, no mask): gdalbuildvrt
    where nothing is resampled or nearest is, else gdalwarp (GDAL's VRT kernels skip
    only one of nodata and mask, so such inputs are resampled by the warper)."""
    resampling = PATHS[path_id][1]
    base = smooth_field(np.random.default_rng(1), 90, 110, 20, 60, "uint16")[None].repeat(2, 0)
    base_path = write_raster(tmp_path / "base.tif", base,
                             (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES), nodata=0)
    data, mask, alpha = messy_tile(2)
    band_mask = np.full(mask.shape, 255, np.uint8)
    band_mask[5:15, 5:20] = 0
    flags = MASKS[kind]
    valid = np.ones(data.shape, bool)
    valid &= (mask != 0) if flags.get("mask") else True
    valid &= (alpha != 0) if flags.get("alpha") else True
    if flags.get("per_band"):
        valid[0] &= mask != 0
        valid[1] &= band_mask != 0
    data[~valid & (data != 0)] = GARBAGE  # under the mask, never nodata
    gt, wkt = placed(path_id)
    top = write_tile(tmp_path / "top.tif", data, gt, wkt, nodata=0,
                     mask=mask if flags.get("mask") else None,
                     alpha=alpha if flags.get("alpha") else None,
                     internal=flags.get("internal", False))
    if flags.get("per_band"):
        top = per_band_vrt(tmp_path, top, [mask, band_mask])
    clean = write_tile(tmp_path / "clean.tif", np.where(valid, data, 0).astype(data.dtype), gt,
                       wkt, nodata=0)
    out = tmp_path / "out.tif"
    run_cli(base_path, top, "-o", out, "--resampling", resampling, "--chunk", "32",
            "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16", "--quiet", check=True)
    got, got_gt, nd = read(out)
    want, want_gt, want_nd = reference(path_id, [base_path, clean], tmp_path / "ref.tif",
                                       got_gt, got.shape[1:], warper=True)
    assert got_gt == want_gt and nd == want_nd == 0
    np.testing.assert_array_equal(got, want)
    assert not (got == GARBAGE).any()
    assert (got > 100).sum() > 0.3 * valid.sum()  # the top input is there


@pytest.mark.parametrize("path_id", list(PATHS))
def test_a_nodata_value_the_type_cannot_hold_matches_no_pixel(tmp_path, path_id):
    """-9999 as the nodata of a Byte input matches no pixel on every read path, as in
    GDAL: it does not wrap to 241 and delete the valid 241 pixels."""
    base = smooth_field(np.random.default_rng(1), 90, 110, 20, 60, "uint8")
    base_path = write_raster(tmp_path / "base.tif", base,
                             (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES), nodata=0)
    top = smooth_field(np.random.default_rng(3), 70, 80, 200, 255, "uint8", noise=0.2)[None]
    assert (top == 241).sum() > 50
    gt, wkt = placed(path_id)
    top_path = write_tile(tmp_path / "top.tif", top, gt, wkt, nodata=-9999)
    plain = write_tile(tmp_path / "plain.tif", top, gt, wkt)  # the same without nodata
    out = tmp_path / "out.tif"
    run_cli(base_path, top_path, "-o", out, "--resampling", PATHS[path_id][1], "--chunk",
            "32", "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16", "--quiet", check=True)
    got, got_gt, nd = read(out)
    want, want_gt, want_nd = reference(path_id, [base_path, plain], tmp_path / "ref.tif",
                                       got_gt, got.shape[1:])
    assert got_gt == want_gt and nd == want_nd == 0
    np.testing.assert_array_equal(got, want)
    if PATHS[path_id][1] == "nearest":
        assert (got == 241).sum() >= (top == 241).sum() - 80  # all but an edge row/column


needs_int64 = pytest.mark.skipif(not hasattr(gdal, "GDT_Int64"), reason="GDAL < 3.5")
BIG = 2 ** 61 + 12345  # far beyond float64 precision (53 bits), twice it fits int64


def int64_tiles(folder, dtype, nodata, count=2, low=BIG):
    """``count`` overlapping 1-band tiles (40 x 50 px, 30 px apart) of huge integers, each
    with a nodata strip; returns paths and the arrays."""
    rng = np.random.default_rng(5)
    paths, arrays = [], []
    for i in range(count):
        data = (low + rng.integers(0, 1000, (1, 40, 50))).astype(dtype)
        data[0, :4] = nodata
        gt = (ORIGIN[0] + 30 * i * RES, RES, 0, ORIGIN[1], 0, -RES)
        paths.append(write_tile(folder / f"big{i}.tif", data, gt, srs_wkt(32633), nodata=nodata))
        arrays.append(data)
    return paths, arrays


@needs_int64
@pytest.mark.parametrize("dtype,nodata", [("int64", -2 ** 63), ("int64", BIG + 7),
                                          ("uint64", 2 ** 64 - 1)])
def test_64_bit_inputs_with_nodata_mosaic_exactly(tmp_path, dtype, nodata):
    """Int64/UInt64 nodata is read and written exactly (no crash, no float rounding)."""
    paths, arrays = int64_tiles(tmp_path, dtype, nodata)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--quiet", check=True)
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert gdal.GetDataTypeName(band.DataType) == {"int64": "Int64", "uint64": "UInt64"}[dtype]
    stored = band.GetNoDataValueAsInt64() if dtype == "int64" else band.GetNoDataValueAsUInt64()
    assert stored == nodata
    got = ds.ReadAsArray()
    ds = None
    want = np.full((40, 80), nodata, dtype)  # numpy: the second tile over the first
    for i, data in enumerate(arrays):
        valid = data[0] != np.dtype(dtype).type(nodata)
        region = want[:, 30 * i:30 * i + 50]
        region[valid] = data[0][valid]
    np.testing.assert_array_equal(got, want)
    assert (want != np.dtype(dtype).type(nodata)).mean() > 0.8
    if nodata == BIG + 7:  # valid neighbours of the nodata value that float64 confuses with it
        assert ((want != nodata) & (want > BIG) & (want < BIG + 50)).sum() > 50
    assert not list(tmp_path.glob("*.partial*"))


@needs_int64
def test_int64_and_uint64_inputs_are_refused_without_a_data_type(tmp_path):
    """No numpy type holds int64 and uint64 both: one line naming the two inputs and
    DATA_TYPE, exit 2, nothing written. With DATA_TYPE, the run goes ahead (and says
    what float64 rounds)."""
    (signed,), _ = int64_tiles(tmp_path, "int64", -1, count=1)
    unsigned = write_tile(tmp_path / "unsigned.tif", np.full((1, 40, 50), 7, np.uint64),
                          (ORIGIN[0] + 300, RES, 0, ORIGIN[1], 0, -RES), srs_wkt(32633))
    out = tmp_path / "out.tif"
    proc = run_cli(signed, unsigned, "-o", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "unsigned.tif" in lines[0] and "big0.tif" in lines[0] and "DATA_TYPE" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big0.tif", "unsigned.tif"]
    proc = run_cli(signed, unsigned, "-o", out, "--dtype", "float64", check=True)
    assert "rounds 64-bit integer values beyond 2**53" in proc.stderr
    got = read(out)[0]
    assert got.dtype == np.float64 and (got[0, :, 30:] == 7).all()


@needs_int64
@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_sum_of_64_bit_inputs_is_exact_and_saturates(tmp_path, dtype):
    """The sum of 64-bit integers is exact beyond 2**53 and clipped to the type's range
    when it leaves it (not wrapped, not rounded through float64)."""
    info = np.iinfo(dtype)
    a = np.full((1, 20, 30), BIG + 1, dtype)
    b = np.full((1, 20, 30), BIG + 2, dtype)
    a[0, :, :10] = info.max - 5      # + BIG: past the top
    if dtype == "int64":
        a[0, :, 10:15] = info.min + 5  # + (-BIG): past the bottom
        b[0, :, 10:15] = -BIG
    gt = (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES)
    paths = [write_tile(tmp_path / f"{n}.tif", d, gt, srs_wkt(32633)) for n, d in (("a", a), ("b", b))]
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--method", "sum", "--quiet", check=True)
    got = read(out)[0]
    assert got.dtype == np.dtype(dtype)
    want = np.array([int(x) + int(y) for x, y in zip(a.ravel(), b.ravel())], object)
    want = np.clip(want, int(info.min), int(info.max)).astype(dtype).reshape(a.shape)
    np.testing.assert_array_equal(got, want)
    assert (got[0, :, 20:] == 2 * BIG + 3).all()


@needs_int64
def test_a_float_result_converted_to_int64_does_not_wrap(tmp_path):
    """The mean of values near the int64 maximum, rounded through float64 to 2**63, is
    written as the maximum, not wrapped to the minimum; the log says it is rounded."""
    top = np.iinfo(np.int64).max
    gt = (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES)
    paths = [write_tile(tmp_path / f"{i}.tif", np.full((1, 10, 10), top - i, np.int64), gt,
                        srs_wkt(32633)) for i in range(2)]
    out = tmp_path / "out.tif"
    proc = run_cli(*paths, "-o", out, "--method", "mean", check=True)
    assert "computes in float64" in proc.stderr
    got = read(out)[0]
    assert (got == top).all()


def test_core_imports_and_reads_without_64_bit_gdal_types(tmp_path):
    """GDAL < 3.5 has no GDT_Int64 / GDT_UInt64: the core imports and plans anyway."""
    path = write_raster(tmp_path / "a.tif", np.full((20, 30), 3, np.uint8),
                        (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES), nodata=0)
    script = (
        "from osgeo import gdal\n"
        "for name in ('GDT_Int64', 'GDT_UInt64'):\n"
        "    if hasattr(gdal, name): delattr(gdal, name)\n"
        "from streaming_mosaic.core import engine, options\n"
        f"engine.run(options.Options(inputs=[{path!r}], output={str(tmp_path / 'o.tif')!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert (read(tmp_path / "o.tif")[0] == 3).all()


@pytest.mark.parametrize("kind", ["msk", "internal-mask", "alpha"])
@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "lanczos"])
def test_a_masked_input_is_resampled_as_gdalbuildvrt_does(tmp_path, kind, resampling):
    """An input whose only validity is its mask (or the alpha band of a 2-band Byte
    file), off the grid by a fraction of a pixel: GDAL's VRT kernels skip masked pixels
    and a pixel is valid where the resampled mask is not 0, exactly as gdalbuildvrt -r
    + gdal_translate (the base below shows through where it is not)."""
    alpha = kind == "alpha"  # gdalbuildvrt needs the same bands: both get an alpha band
    dtype = "uint8" if alpha else "uint16"  # (GDAL rescales a 16-bit alpha band)
    base = smooth_field(np.random.default_rng(1), 90, 110, 20, 60, dtype)[None]
    base_path = write_tile(tmp_path / "base.tif", base, (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES),
                           srs_wkt(32633), alpha=np.full(base.shape[1:], 255, np.uint8)
                           if alpha else None)
    data, mask, _alpha = messy_tile(4, shape=(1, 70, 80))
    data = (data // 24 + 70).astype(dtype)  # 74-195: no kernel overshoot reaches 255
    garbage = 255 if alpha else GARBAGE
    data[:, mask == 0] = garbage
    gt, wkt = placed("vrt-nearest")
    top = write_tile(tmp_path / "top.tif", data, gt, wkt, mask=None if alpha else mask,
                     alpha=mask if alpha else None, internal=kind == "internal-mask")
    out = tmp_path / "out.tif"
    run_cli(base_path, top, "-o", out, "--resampling", resampling, "--chunk", "32",
            "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16", "--quiet", check=True)
    got, got_gt, nd = read(out)
    want, want_gt, _nd = read(vrt_reference([base_path, top], tmp_path / "ref.tif",
                                            resampleAlg=resampling))
    assert want_gt == got_gt and nd is None
    np.testing.assert_array_equal(got[0], want[0])  # the base shows where the top is invalid
    assert (got >= 70).sum() > 0.5 * (mask != 0).sum() and not (got == garbage).any()


def test_same_crs_inputs_resampled_by_the_warper_count_its_memory(tmp_path):
    """An input in the output's CRS that the warper resamples (here: nodata and a mask
    with bilinear) has its warp memory in the budget, as a reprojected one."""
    data, mask, _alpha = messy_tile(6)
    gt, wkt = placed("vrt-bilinear")
    top = write_tile(tmp_path / "top.tif", data, gt, wkt, nodata=0, mask=mask)
    base = write_raster(tmp_path / "base.tif", np.ones((2, 90, 110), np.uint16),
                        (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES), nodata=0)
    plans = {r: make_plan(Options(inputs=[base, top], resampling=r))
             for r in ("nearest", "bilinear")}
    assert plans["nearest"].specs[1].kind == "vrt" and plans["nearest"].budget.warp == 0
    assert plans["bilinear"].specs[1].kind == "warp" and plans["bilinear"].budget.warp > 0
