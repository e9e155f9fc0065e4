"""Mixed-CRS mosaics agree with gdalwarp -t_srs -tr [-tap] -r near of the same inputs.

The grid (geotransform and size) must be identical, and at most 0.5% of the pixels
may differ, along the edges of the inputs' valid areas. Both sides use the same
transformer error, 0.01 px (the streaming warp's; gdalwarp -et 0.01): with
gdalwarp's default 0.125 px either tool may pick the neighbouring source pixel
where a pixel centre falls that close to a source pixel edge, since they cut the
output into different chunks (measured: up to 1.2% of the pixels for a WGS 84
tile). At 0.01 px a few such pixels remain, in a thin band along source pixel
edges, where either neighbour is a correct nearest-neighbour pick.
"""

import numpy as np
import pytest
from osgeo import gdal, osr

from helpers import dilate, read, run_cli, smooth_field, write_raster
from streaming_mosaic.core import engine, specs
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan
from streaming_mosaic.core.specs import WARP_ERROR, warp_scale

# A 30 m tile in UTM 32N and a 25 m tile in UTM 33N straddling the zone border
# (12 E) at 47.5 N, overlapping by about 2 km; a 0.0003 degree tile in EPSG:4326
# over the same place.
TILES = {
    "utm32": dict(epsg=32632, origin=(722013.0, 5268011.0), res=(30.0, 30.0), size=(400, 320)),
    "utm33": dict(epsg=32633, origin=(272007.0, 5267003.0), res=(25.0, 25.0), size=(440, 340)),
    "geo": dict(epsg=4326, origin=(11.9921, 47.5436), res=(0.0003, 0.0002), size=(460, 480)),
    "far": dict(epsg=32632, origin=(650000.0, 5100000.0), res=(30.0, 30.0), size=(60, 50)),
}


def make_tile(folder, name, dtype, nodata, seed):
    spec = TILES[name]
    rng = np.random.default_rng(seed)
    w, h = spec["size"]
    data = smooth_field(rng, h, w, 1, 3000, dtype)
    data[:4, :] = nodata                      # a nodata collar
    y, x = rng.integers(10, h - 20), rng.integers(10, w - 20)
    data[y:y + 9, x:x + 13] = nodata          # and a hole
    (x0, y0), (rx, ry) = spec["origin"], spec["res"]
    return write_raster(folder / f"{name}.tif", data, (x0, rx, 0, y0, 0, -ry), spec["epsg"],
                        nodata)


def gdalwarp(paths, out, epsg, res, bounds=None, tap=False):
    """gdalwarp -t_srs EPSG:epsg -tr res res [-tap] [-te bounds] -r near (inputs' nodata)."""
    kwargs = dict(dstSRS=f"EPSG:{epsg}", xRes=res, yRes=res, resampleAlg="near",
                  targetAlignedPixels=tap, errorThreshold=WARP_ERROR)
    if bounds is not None:
        kwargs["outputBounds"] = bounds
    ds = gdal.Warp(str(out), [str(p) for p in paths], **kwargs)
    assert ds is not None, gdal.GetLastErrorMsg()
    ds = None
    return str(out)


def valid_of(array, nodata):
    return ~np.isnan(array) if np.isnan(nodata) else array != nodata


def edge_zone(paths, ref, epsg, res, nodata, tap, width=2):
    """Pixels within ``width`` px of the edge of some input's valid area on the reference
    grid, and each input's valid area there (each input warped alone by gdalwarp)."""
    arr, gt, _ = read(ref)
    h, w = arr.shape[1:]
    bounds = (gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3])
    zone = np.zeros((h, w), bool)
    valids = []
    for i, path in enumerate(paths):
        alone = gdalwarp([path], f"{ref}.{i}.tif", epsg, res, bounds, tap)
        valid = valid_of(read(alone)[0][0], nodata)
        assert valid.shape == (h, w)
        zone |= dilate(valid, width) & dilate(~valid, width)
        valids.append(valid)
    return zone, valids


def ambiguous_zone(paths, ref, epsg, tolerance):
    """Pixels whose exact source coordinate in a reprojected input is within
    ``tolerance`` source pixels of a pixel edge (nearest may pick either side)."""
    arr, gt, _ = read(ref)
    h, w = arr.shape[1:]
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = gt[0] + cols * gt[1], gt[3] + rows * gt[5]
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(epsg)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    zone = np.zeros((h, w), bool)
    for path in paths:
        ds = gdal.Open(str(path))
        src = ds.GetSpatialRef()
        src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if src.IsSame(dst):
            continue
        sgt = ds.GetGeoTransform()
        ct = osr.CoordinateTransformation(dst, src)
        pts = np.array(ct.TransformPoints(np.c_[xs.ravel(), ys.ravel()]))
        scol = ((pts[:, 0] - sgt[0]) / sgt[1]).reshape(h, w)
        srow = ((pts[:, 1] - sgt[3]) / sgt[5]).reshape(h, w)
        near_edge = ((np.abs(scol - np.rint(scol)) < tolerance)
                     | (np.abs(srow - np.rint(srow)) < tolerance))
        inside = ((scol > -1) & (scol < ds.RasterXSize + 1)
                  & (srow > -1) & (srow < ds.RasterYSize + 1))
        zone |= near_edge & inside
    return zone


def differing(a, b):
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
    return ~same


CASES = [
    # inputs (in stacking order), target EPSG, pixel size, -tap, -te, dtype, nodata
    pytest.param(("utm32", "utm33"), 32633, 30.0, True, None, "uint16", 0,
                 id="two-utm-zones-to-33N"),
    pytest.param(("utm33", "utm32"), 32632, 20.0, True, None, "uint16", 0,
                 id="two-utm-zones-to-32N"),
    pytest.param(("utm32", "utm33"), 32633, 27.0, False, None, "int16", -1,
                 id="two-utm-zones-no-tap"),
    pytest.param(("geo", "utm33"), 32633, 20.0, True, None, "float32", float("nan"),
                 id="geographic-and-utm-to-utm"),
    pytest.param(("utm33", "geo"), 4326, 0.00025, True, None, "float32", float("nan"),
                 id="utm-and-geographic-to-4326"),
    # EXTENT cuts every input (one is entirely outside it), on and off the tap grid.
    pytest.param(("utm32", "utm33", "geo", "far"), 32633, 20.0, False,
                 (272000.5, 5259000.3, 276000.7, 5264000.1), "uint16", 0,
                 id="extent-cuts-all-inputs"),
    pytest.param(("far", "geo", "utm32", "utm33"), 32633, 20.0, True,
                 (280000.0, 5262000.0, 290000.0, 5267000.0), "uint16", 0,
                 id="extent-tap-cuts-all-inputs"),
]


@pytest.mark.parametrize("names,epsg,res,tap,extent,dtype,nodata", CASES)
def test_mixed_crs_mosaic_matches_gdalwarp(tmp_path, names, epsg, res, tap, extent, dtype,
                                           nodata):
    paths = [make_tile(tmp_path, n, dtype, nodata, seed) for seed, n in enumerate(names)]
    ref = gdalwarp(paths, tmp_path / "ref.tif", epsg, res, bounds=extent, tap=tap)
    out = tmp_path / "out.tif"
    extra = ["--extent", ",".join(map(str, extent))] if extent else []
    proc = run_cli(*paths, "-o", out, "--target-crs", f"EPSG:{epsg}", "--pixel-size", res,
                   *(["--tap"] if tap else []), *extra, "--resampling", "nearest", "--chunk",
                   "128", "--quiet", check=True)
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(ref)
    assert gt == want_gt
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert (np.isnan(nd) and np.isnan(want_nd)) if np.isnan(nodata) else nd == want_nd == nodata
    diff = differing(got, want)[0]
    edges, valids = edge_zone(paths, ref, epsg, res, nodata, tap)
    # Every input but "far" fills a good part of the grid, and they overlap.
    for name, valid in zip(names, valids):
        assert (valid.mean() > 0.1) if name != "far" else not valid.any()
    assert np.sum(valids, axis=0).max() >= 2 and (np.sum(valids, axis=0) >= 2).mean() > 0.05
    if "far" in names:
        assert "outside the output extent: far.tif" in proc.stderr
    assert diff.mean() <= 0.005, f"{diff.sum()} of {diff.size} pixels differ"
    # Away from edges, only where a pixel centre maps within the transformer's error of
    # a source pixel edge; nearly all of those agree too, so the zone is no blanket.
    ambiguous = ambiguous_zone(paths, ref, epsg, tolerance=1.5 * WARP_ERROR)
    assert (diff & ambiguous).sum() <= 0.05 * ambiguous.sum()
    stray = diff & ~edges & ~ambiguous
    assert not stray.any(), f"{stray.sum()} differing pixels away from input edges, " \
        f"e.g. at (row, col) {tuple(np.argwhere(stray)[0])}"


def test_thread_count_and_memory_do_not_change_a_reprojected_mosaic(tmp_path):
    paths = [make_tile(tmp_path, n, "uint16", 0, seed) for seed, n in enumerate(("utm32", "utm33"))]
    outputs = []
    for i, extra in enumerate((["--threads", "1", "--memory-mb", "16"],
                               ["--threads", "2", "--memory-mb", "512"])):
        out = tmp_path / f"out{i}.tif"
        run_cli(*paths, "-o", out, "--target-crs", "EPSG:32633", "--pixel-size", 30, "--tap",
                "--chunk", "128", "--quiet", *extra, check=True)
        outputs.append(read(out))
    (a, gt_a, _), (b, gt_b, _) = outputs
    assert gt_a == gt_b
    np.testing.assert_array_equal(a, b)


def test_a_hole_in_one_band_of_a_reprojected_input_stays_a_hole_in_that_band(tmp_path):
    # Base in the target CRS (32633), a 3-band tile from UTM 32N on top of it whose
    # band 2 has a nodata hole: band 2 must show the base there, bands 1 and 3 the tile.
    base = np.full((3, 120, 120), 40, np.uint8)
    write_raster(tmp_path / "base.tif", base, (300000, 10, 0, 5001200, 0, -10), 32633, nodata=0)
    top = np.full((3, 60, 60), 200, np.uint8)
    top[1, 20:40, 20:40] = 0
    # UTM 32N coordinates of the base's centre area (same place, other zone)
    src = osr.SpatialReference()
    src.ImportFromEPSG(32633)
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(32632)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y, _ = osr.CoordinateTransformation(src, dst).TransformPoint(300300, 5000900)
    write_raster(tmp_path / "top.tif", top, (x, 10, 0, y, 0, -10), 32632, nodata=0)
    out = tmp_path / "out.tif"
    proc = run_cli(tmp_path / "base.tif", tmp_path / "top.tif", "-o", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "moved" not in proc.stderr and "nearest other value" not in proc.stderr
    got, _gt, nd = read(out)
    assert nd == 0
    covered = got[0] == 200
    assert covered.sum() > 2000
    hole = covered & (got[1] != 200)
    assert 200 < hole.sum() < 600          # the 20x20 hole, warped
    assert (got[1][hole] == 40).all()       # the base shows through, never 0 or 1
    assert (got[2][covered] == 200).all()


KERNEL_CASES = [
    # input, target EPSG, pixel size: upsampling from degrees, downsampling 30 m to 45 m
    pytest.param("geo", 32633, 20.0, "float32", float("nan"), id="geo-to-utm-20m"),
    pytest.param("utm32", 32633, 45.0, "int16", -1, id="utm32-to-utm33-45m"),
]


def kernel_reference(path, out, epsg, res, resampling, error, scales, bounds):
    """gdalwarp -r resampling -et error -wo XSCALE -wo YSCALE on the given grid."""
    ds = gdal.Warp(str(out), str(path), dstSRS=f"EPSG:{epsg}", xRes=res, yRes=res,
                   outputBounds=bounds, resampleAlg=resampling, errorThreshold=error,
                   warpOptions=[f"XSCALE={scales[0]!r}", f"YSCALE={scales[1]!r}"])
    assert ds is not None, gdal.GetLastErrorMsg()
    ds = None
    return read(out)[0]


def run_streaming(path, out, epsg, res, resampling, chunk):
    """The streaming mosaic of one input, and the kernel scales it warps with."""
    opts = Options(inputs=[str(path)], output=str(out), target_crs=f"EPSG:{epsg}",
                   pixel_size=res, target_aligned_pixels=True, chunk_size=chunk,
                   resampling=resampling)
    fp = make_plan(opts).footprints[0]
    engine.run(opts)
    got, gt, _nd = read(out)
    h, w = got.shape[1:]
    bounds = (gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3])
    return got, bounds, (warp_scale(fp.res[0], res), warp_scale(fp.res[1], res))


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "cubicspline",
                                        "lanczos"])
@pytest.mark.parametrize("name,epsg,res,dtype,nodata", KERNEL_CASES)
def test_reprojection_equals_gdalwarp_pixel_for_pixel_with_exact_transforms(
        tmp_path, monkeypatch, name, epsg, res, dtype, nodata, resampling):
    """With exact transforms on both sides (-et 0) the streaming warp is gdalwarp's, pixel
    for pixel and nodata included, for every resampling kernel: windows warp with one
    kernel scale per input (GDAL's own rule, which GDAL applies per chunk), and a pixel
    is valid where gdalwarp writes it. Only the transformer's approximation (0.01 px
    by default) separates the two (see the next test)."""
    monkeypatch.setattr(specs, "WARP_ERROR", 0.0)
    path = make_tile(tmp_path, name, dtype, nodata, 0)
    got, bounds, scales = run_streaming(path, tmp_path / "out.tif", epsg, res, resampling, 128)
    want = kernel_reference(path, tmp_path / "ref.tif", epsg, res, resampling, 0.0, scales,
                            bounds)
    assert got.shape == want.shape and min(got.shape[1:]) > 128  # several windows
    assert not differing(got, want).any()
    valid = valid_of(want, nodata)
    assert 0.3 < valid.mean() < 1 and (~valid[:, 1:-1, 1:-1]).any()  # holes and edges


@pytest.mark.parametrize("resampling", ["bilinear", "lanczos"])
def test_reprojection_with_kernels_is_close_to_gdalwarp_at_the_default_error(tmp_path,
                                                                           resampling):
    """At the default 0.01 px transformer error (both sides) the approximation differs
    between the streaming warp and gdalwarp's chunks: validity differs only at the
    edges of the valid area (a handful of pixels), values by a fraction of a percent."""
    path = make_tile(tmp_path, "geo", "float32", float("nan"), 0)
    got, bounds, scales = run_streaming(path, tmp_path / "out.tif", 32633, 20.0, resampling,
                                        128)
    want = kernel_reference(path, tmp_path / "ref.tif", 32633, 20.0, resampling, WARP_ERROR,
                            scales, bounds)
    a, b = valid_of(got, float("nan"))[0], valid_of(want, float("nan"))[0]
    edges = dilate(b, 2) & dilate(~b, 2)
    assert not ((a != b) & ~edges).any() and (a != b).sum() <= 1e-4 * b.size
    both = a & b
    assert np.abs(got[0][both] - want[0][both]).max() <= 0.01 * np.ptp(want[0][both])
