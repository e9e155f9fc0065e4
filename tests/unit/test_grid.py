"""The output grid (RESOLUTION, PIXEL_SIZE, -tap, EXTENT) matches gdalbuildvrt exactly.

Inputs share a CRS but have different pixel sizes and origins off the output
grid, so most are read through the one-source VRT path of core/specs.py; the
reference is gdalbuildvrt with the equivalent options + gdal_translate.
"""

import os

import numpy as np
import pytest
from osgeo import gdal, osr

from helpers import read, run_cli, smooth_field, write_raster
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan

# name: (origin x, origin y, pixel size, columns, rows). All in EPSG:32633.
TILES = {
    "a10": (500003.0, 5000007.0, 10.0, 180, 150),
    "b15": (501207.5, 4999601.3, 15.0, 130, 110),
    "c7.5": (499504.2, 5000512.9, 7.5, 200, 170),   # the finest: its origin starts the grid
    "d7.5": (500807.1, 4999333.3, 7.5, 90, 80),     # finest too, but off that grid by a fraction
    "far": (520000.2, 5000512.9, 7.5, 20, 17),      # far east of the others
}
NEAR = ["a10", "b15", "c7.5", "d7.5"]
INSIDE = (500500.0, 4999000.0, 502000.0, 5000300.0)  # clips every near tile, misses "far"


def write_tiles(folder, dtype, nodata):
    rng = np.random.default_rng(11)
    paths = {}
    for name, (x0, y0, res, w, h) in TILES.items():
        data = smooth_field(rng, h, w, -500, 3000, dtype)
        data[:3, :] = nodata
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
        data[y:y + 9, x:x + 11] = nodata
        paths[name] = write_raster(folder / f"{name}.tif", data, (x0, res, 0, y0, 0, -res),
                                   32633, nodata)
    return paths


@pytest.fixture(scope="module", params=[("int16", -9999.0), ("float32", float("nan"))],
                ids=["int16", "float32-nan"])
def tiles(request, tmp_path_factory):
    dtype, nodata = request.param
    folder = tmp_path_factory.mktemp(f"grid-{dtype}")
    return folder, write_tiles(folder, dtype, nodata), nodata


def buildvrt(paths, out, **options):
    vrt = f"{out}.vrt"
    assert gdal.BuildVRT(vrt, [str(p) for p in paths], **options) is not None
    assert gdal.Translate(str(out), vrt) is not None
    os.remove(vrt)
    return str(out)


def assert_same_mosaic(out, ref, nodata):
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(ref)
    assert gt == want_gt
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    if np.isnan(nodata):
        assert np.isnan(nd) and np.isnan(want_nd)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    else:
        assert nd == want_nd == nodata
        np.testing.assert_array_equal(got, want)
    valid = ~np.isnan(want) if np.isnan(nodata) else want != nodata
    assert valid.mean() > 0.3  # the comparison is about real data
    return gt, got.shape[1:]


def bounds_of(gt, shape):
    h, w = shape
    return gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]


GRID_CASES = [
    # id, CLI options, equivalent gdalbuildvrt options, expected pixel size
    ("highest", ["--resolution", "highest"], dict(resolution="highest"), 7.5),
    ("lowest", ["--resolution", "lowest"], dict(resolution="lowest"), 15.0),
    ("average", ["--resolution", "average"], dict(resolution="average"),
     (10.0 + 15.0 + 7.5 + 7.5) / 4),
    ("pixel-size", ["--pixel-size", "12"], dict(xRes=12, yRes=12), 12.0),
    ("pixel-size-tap", ["--pixel-size", "12", "--tap"],
     dict(xRes=12, yRes=12, targetAlignedPixels=True), 12.0),
    ("tap-snaps-to-lowest", ["--resolution", "lowest", "--tap"],
     dict(xRes=15, yRes=15, targetAlignedPixels=True), 15.0),
    ("tap-snaps-to-highest", ["--tap"], dict(xRes=7.5, yRes=7.5, targetAlignedPixels=True), 7.5),
    ("extent", ["--extent", ",".join(map(str, INSIDE))],
     dict(resolution="highest", outputBounds=INSIDE), 7.5),
    ("extent-off-grid", ["--extent", "500501.3,4999000.7,502000.1,5000300.9"],
     dict(resolution="highest", outputBounds=(500501.3, 4999000.7, 502000.1, 5000300.9)), 7.5),
    ("extent-tap-pixel-size",
     ["--extent", "500501.3,4999000.7,502000.1,5000300.9", "--pixel-size", "10", "--tap"],
     dict(xRes=10, yRes=10, targetAlignedPixels=True,
          outputBounds=(500501.3, 4999000.7, 502000.1, 5000300.9)), 10.0),
    ("extent-beyond-inputs", ["--extent", "499000,4998000,501000,5000000"],
     dict(resolution="highest", outputBounds=(499000, 4998000, 501000, 5000000)), 7.5),
    ("extent-lowest", ["--extent", ",".join(map(str, INSIDE)), "--resolution", "lowest"],
     dict(resolution="lowest", outputBounds=INSIDE), 15.0),
]


@pytest.mark.parametrize("cli,vrt_options,res", [c[1:] for c in GRID_CASES],
                         ids=[c[0] for c in GRID_CASES])
def test_grid_and_pixels_match_gdalbuildvrt(tiles, tmp_path, cli, vrt_options, res):
    _folder, paths, nodata = tiles
    names = NEAR + (["far"] if "--extent" in cli else [])
    inputs = [paths[n] for n in names]
    out = tmp_path / "out.tif"
    proc = run_cli(*inputs, "-o", out, "--chunk", "256", "--quiet", *cli, check=True)
    ref = buildvrt(inputs, tmp_path / "ref.tif", **vrt_options)
    gt, shape = assert_same_mosaic(out, ref, nodata)
    assert (gt[1], -gt[5]) == pytest.approx((res, res), rel=1e-12)
    if "--tap" in cli:
        assert all(abs(v / res - round(v / res)) < 1e-9 for v in bounds_of(gt, shape))
    if "--extent" in cli:
        assert "far.tif" in proc.stderr  # warned: lies outside the extent


def test_inputs_off_the_grid_take_the_vrt_path(tiles):
    """The grid tests above exercise every read path: aligned inputs direct, others via VRT."""
    _folder, paths, _nodata = tiles
    plan = make_plan(Options(inputs=[paths[n] for n in NEAR], output="x.tif", chunk_size=256))
    kinds = {os.path.basename(s.path): s.kind for s in plan.specs}
    assert kinds == {"a10.tif": "vrt", "b15.tif": "vrt", "c7.5.tif": "direct", "d7.5.tif": "vrt"}


def transform_bounds(bounds, src_epsg, dst_epsg):
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(src_epsg)
    dst.ImportFromEPSG(dst_epsg)
    for srs in (src, dst):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(src, dst).TransformBounds(*bounds, 21)


@pytest.mark.parametrize("form", ["--extent-crs", "qgis-suffix"])
def test_extent_in_another_crs_is_transformed_to_the_target_crs(tiles, tmp_path, form):
    """``--extent`` with ``--extent-crs`` is in GDAL order; with a bracketed CRS it is
    QGIS's own text form and order, ``xmin,xmax,ymin,ymax [EPSG:4326]``."""
    _folder, paths, nodata = tiles
    lonlat = (15.0065, 45.1445, 15.0255, 45.156)  # degrees, inside the near tiles
    xmin, ymin, xmax, ymax = lonlat
    extra = ["--extent", ",".join(map(str, lonlat)), "--extent-crs", "EPSG:4326"] \
        if form == "--extent-crs" else ["--extent", f"{xmin},{xmax},{ymin},{ymax} [EPSG:4326]"]
    inputs = [paths[n] for n in NEAR]
    out = tmp_path / "out.tif"
    run_cli(*inputs, "-o", out, "--chunk", "256", "--quiet", *extra, check=True)
    bounds = transform_bounds(lonlat, 4326, 32633)
    ref = buildvrt(inputs, tmp_path / "ref.tif", resolution="highest", outputBounds=bounds)
    gt, shape = assert_same_mosaic(out, ref, nodata)
    assert bounds_of(gt, shape)[0] == pytest.approx(bounds[0], abs=1e-6)
    assert bounds_of(gt, shape)[3] == pytest.approx(bounds[3], abs=1e-6)


@pytest.mark.parametrize("extent,extra,words", [
    ("15.0065,15.0255,45.1445,45.156 [EPSG:4326]", ["--extent-crs", "EPSG:32633"],
     ["[EPSG:4326]", "EPSG:32633", "give one"]),
    ("15.0065,15.0255,45.1445 [EPSG:4326]", [], ["xmin,xmax,ymin,ymax"]),
    ("15.0255,15.0065,45.1445,45.156 [EPSG:4326]", [], ["empty", "xmin,xmax,ymin,ymax"]),
    ("15.0065,15.0255,45.1445,45.156 []", [], ["empty CRS"]),
])
def test_qgis_extent_text_that_is_ambiguous_or_malformed_is_refused(small_tiles, tmp_path,
                                                                    extent, extra, words):
    out = tmp_path / "out.tif"
    proc = run_cli(small_tiles["a10"], "-o", out, "--extent", extent, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "EXTENT" in lines[0], proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert os.listdir(tmp_path) == []


def test_negative_extent_values_are_accepted_on_the_command_line(tmp_path):
    """``--extent -10,...`` (negative xmin) is a value, not an unknown option."""
    rng = np.random.default_rng(4)
    data = smooth_field(rng, 60, 80, 1, 200, "uint8")
    path = write_raster(tmp_path / "west.tif", data, (-5000.0, 100.0, 0, 3000.0, 0, -100.0),
                        32633, 0)
    out = tmp_path / "out.tif"
    run_cli(path, "-o", out, "--extent", "-4000,-2000,-1000,2000", "--quiet", check=True)
    _, gt, _ = read(out)
    ref = buildvrt([path], tmp_path / "ref.tif", outputBounds=(-4000, -2000, -1000, 2000))
    assert gt == read(ref)[1]
    np.testing.assert_array_equal(read(out)[0], read(ref)[0])


@pytest.fixture(scope="module")
def small_tiles(tmp_path_factory):
    return write_tiles(tmp_path_factory.mktemp("grid-errors"), "int16", -9999.0)


@pytest.mark.parametrize("extent,extra", [
    ("600000,4999000,602000,5000300", []),                      # east of every input
    ("14.0,44.0,14.1,44.1", ["--extent-crs", "EPSG:4326"]),     # west, given in degrees
])
def test_extent_that_meets_no_input_is_refused(small_tiles, tmp_path, extent, extra):
    out = tmp_path / "out.tif"
    proc = run_cli(*[small_tiles[n] for n in NEAR], "-o", out, "--extent", extent, *extra)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "EXTENT" in lines[0] and "overlap" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(out) and os.listdir(tmp_path) == []


@pytest.mark.parametrize("extent", ["1,2,3", "a,b,c,d", "1,2,3,4,5", "5,5,5,6", "3,2,1,0",
                                    "500500,5000300,502000,4999000", "1,2,inf,4", "1;2"])
def test_invalid_or_empty_extent_is_refused(small_tiles, tmp_path, extent):
    out = tmp_path / "out.tif"
    proc = run_cli(small_tiles["a10"], "-o", out, "--extent", extent)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "EXTENT" in lines[0], proc.stderr
    assert not os.path.exists(out)


@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "cubicspline", "lanczos", "mode",
                                        "average"])
def test_resampled_inputs_do_not_depend_on_chunk_size_and_match_gdal(tiles, tmp_path,
                                                                      resampling):
    """Pixel for pixel, nodata included: GDAL's kernels skip nodata pixels and
    renormalize, so a pixel next to a hole or an input's edge is valid when it has
    valid neighbours, exactly as in gdalbuildvrt -r + gdal_translate."""
    _folder, paths, nodata = tiles
    inputs = [paths[n] for n in NEAR]
    outs = []
    for chunk in ("256", "1024"):  # several windows, then a single one
        out = tmp_path / f"out{chunk}.tif"
        run_cli(*inputs, "-o", out, "--resampling", resampling, "--chunk", chunk, "--quiet",
                check=True)
        outs.append(read(out))
    (got, gt, _), (single, _, _) = outs
    np.testing.assert_array_equal(got, single)
    h, w = got.shape[1:]
    bounds = bounds_of(gt, (h, w))
    if resampling in ("average", "mode"):
        # Read through GDAL's warper: identical to gdalwarp -r average|mode on the same grid.
        ref = tmp_path / "ref.tif"
        gdal.Warp(str(ref), inputs, outputBounds=bounds, xRes=gt[1], yRes=-gt[5],
                  resampleAlg=resampling)
    else:
        ref = buildvrt(inputs, tmp_path / "ref.tif", resolution="highest",
                       resampleAlg=resampling)
    assert_same_mosaic(tmp_path / "out256.tif", ref, nodata)
    # The kernels did reach across holes and edges: some pixels that nearest
    # sampling would leave empty are valid (and the other way round).
    near = read(buildvrt(inputs, tmp_path / "near.tif", outputBounds=bounds, xRes=gt[1],
                         yRes=-gt[5]))[0]
    valid, valid_near = (~np.isnan(a) if np.isnan(nodata) else a != nodata
                         for a in (got, near))
    if resampling not in ("average", "mode"):
        assert (valid & ~valid_near).any()
