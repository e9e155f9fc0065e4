"""Output formats: BANDS, DATA_TYPE, COMPRESSION, CREATION_OPTIONS, COG, OVERVIEWS, OUTPUT name.

References are GDAL's own: gdalbuildvrt (+ -b) and gdal_translate (-ot), GDAL's
COG validator (validate_cloud_optimized_geotiff), and numpy for the documented
conversion rule (round half to even, then clip to the output type's range).
"""

import math
import os

import numpy as np
import pytest
from osgeo import gdal
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate as validate_cog

from helpers import read, run_cli, tile_set, vrt_reference, write_raster

GDAL_TYPES = {"uint8": gdal.GDT_Byte, "int16": gdal.GDT_Int16, "uint16": gdal.GDT_UInt16,
              "uint32": gdal.GDT_UInt32, "int32": gdal.GDT_Int32, "float32": gdal.GDT_Float32,
              "float64": gdal.GDT_Float64}


def one_error_line(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assert_pixels_equal(out, ref):
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(ref)
    assert gt == want_gt and got.shape == want.shape and got.dtype == want.dtype
    assert nd == want_nd or (math.isnan(nd) and math.isnan(want_nd))
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- BANDS

@pytest.fixture(scope="module")
def rgb_tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bands")
    three = tile_set(folder, seed=5, grid=(1, 2), size=(120, 90), bands=3, dtype="uint16",
                     nodata=0)
    four = tile_set(folder, seed=6, grid=(1, 1), size=(120, 90), bands=4, dtype="uint16",
                    nodata=0, origin=(500300.0, 4999700.0))
    return three, four


def test_bands_are_reordered_as_listed(rgb_tiles, tmp_path):
    three, _ = rgb_tiles
    out = tmp_path / "out.tif"
    run_cli(*three, "-o", out, "--bands", "3,1", "--chunk", "256", "--quiet", check=True)
    ref = vrt_reference(three, tmp_path / "ref.tif", bandList=[3, 1])
    assert_pixels_equal(out, ref)
    got = read(out)[0]
    assert got.shape[0] == 2
    # Independently of GDAL's VRT: where only the first tile lies, band 1 is its band 3.
    first = read(three[0])[0]
    np.testing.assert_array_equal(got[0, :, :60], first[2, :, :60])
    np.testing.assert_array_equal(got[1, :, :60], first[0, :, :60])


def test_band_an_input_lacks_is_refused_naming_that_file(rgb_tiles, tmp_path):
    three, four = rgb_tiles
    out = tmp_path / "out.tif"
    line = one_error_line(run_cli(*four, *three, "-o", out, "--bands", "1,4"), "band 4")
    assert os.path.basename(three[0]) in line
    assert not os.path.exists(out)


def test_different_band_counts_fail_unless_bands_selects_common_ones(rgb_tiles, tmp_path):
    three, four = rgb_tiles
    out = tmp_path / "out.tif"
    line = one_error_line(run_cli(*three, *four, "-o", out))
    assert os.path.basename(four[0]) in line
    assert not os.path.exists(out)
    run_cli(*three, *four, "-o", out, "--bands", "2,3", "--chunk", "256", "--quiet", check=True)
    ref = vrt_reference(three + four, tmp_path / "ref.tif", bandList=[2, 3])
    assert_pixels_equal(out, ref)


@pytest.mark.parametrize("bands", ["0", "1,,2", "x", "-1"])
def test_malformed_bands_are_refused(rgb_tiles, tmp_path, bands):
    three, _ = rgb_tiles
    one_error_line(run_cli(*three, "-o", tmp_path / "out.tif", f"--bands={bands}"), "BANDS")


# ----------------------------------------------------------------------- DATA_TYPE

NODATA = 200  # representable in every output type; no valid value rounds or clips to it
TIES = [2.5, 3.5, -2.5, 0.5, -0.5, 254.5, 255.5, 65535.5, 32767.5]
HUGE = [1e39, -1e39]


def conversion_inputs(folder, dtype):
    """Two overlapping tiles whose values need clipping in most output types."""
    rng = np.random.default_rng(21)
    h, w = 60, 100
    v = np.empty((h, w))
    bands = [(1.2, 150.7), (300, 70000), (-40000, -1), (3e9, 5e9), (-3e9, 3e9)]
    for i, (low, high) in enumerate(bands):
        v[:, 20 * i:20 * (i + 1)] = rng.uniform(low, high, (h, 20))
    if dtype == "float64":
        v[0, :len(TIES)] = TIES
        v[1, :len(HUGE)] = HUGE
    else:
        v = np.clip(np.rint(v), np.iinfo(dtype).min, np.iinfo(dtype).max)
    v[5:9, 5:9] = NODATA
    v = v.astype(dtype)
    a = write_raster(folder / "a.tif", v, (500000, 10, 0, 5000000, 0, -10), 32633, NODATA)
    b = write_raster(folder / "b.tif", v[::-1, ::-1][:30].copy(),
                     (500500, 10, 0, 4999800, 0, -10), 32633, NODATA)
    return [a, b]


def documented_cast(values, dtype):
    """Round half to even for float -> int, then clip to the type's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.dtype.kind == "f":
            values = np.rint(values)
        return np.clip(values, info.min, info.max).astype(dtype)
    info = np.finfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


@pytest.mark.parametrize("out_type", ["same", "uint8", "int16", "uint16", "uint32", "int32",
                                      "float32", "float64"])
@pytest.mark.parametrize("in_type", ["float64", "int32"])
def test_data_type_conversion_matches_gdal_translate_and_clips(tmp_path, in_type, out_type):
    inputs = conversion_inputs(tmp_path, in_type)
    out = tmp_path / "out.tif"
    run_cli(*inputs, "-o", out, "--dtype", out_type, "--quiet", check=True)
    mosaic = vrt_reference(inputs, tmp_path / "mosaic.tif")  # GDAL's mosaic, input type
    base = read(mosaic)[0]
    want_type = in_type if out_type == "same" else out_type
    converted = tmp_path / "converted.tif"
    gdal.Translate(str(converted), mosaic, outputType=GDAL_TYPES[want_type])
    got, gt, nd = read(out)
    gdal_conv = read(converted)[0]

    assert got.dtype == np.dtype(want_type)
    assert gt == read(mosaic)[1]
    assert nd == NODATA
    expected = documented_cast(base, want_type)
    np.testing.assert_array_equal(got, expected)
    # GDAL agrees everywhere except on exact .5 ties (it rounds them away from zero)
    # and beyond float32's range (it writes infinities where we clip).
    special = np.isin(base, TIES) | np.isin(base, HUGE)
    np.testing.assert_array_equal(got[~special], gdal_conv[~special])
    # The inputs really exercise clipping (and the rounding rule) for this type.
    valid = base != NODATA
    if np.dtype(want_type).kind in "iu" and want_type != in_type:
        info = np.iinfo(want_type)
        over, under = (base[valid] > info.max).sum(), (base[valid] < info.min).sum()
        assert over >= 20 or want_type == "uint32" and in_type == "int32"
        assert under >= 20 or np.dtype(want_type).kind == "i" and in_type == "int32"
    if in_type == "float64" and np.dtype(want_type).kind in "iu":
        at = {t: got[base == t][0] for t in TIES}
        assert (at[2.5], at[3.5], at[0.5], at[-0.5], at[254.5]) == (2, 4, 0, 0, 254)
    if in_type == "float64" and want_type == "float32":
        assert got[0, 1, 0] == np.finfo(np.float32).max
        assert got[0, 1, 1] == -np.finfo(np.float32).max
    assert (got == NODATA).sum() == (base == NODATA).sum() > 0


# --------------------------------------------------------- COMPRESSION and options

@pytest.fixture(scope="module", params=[("int16", -9999), ("float32", -9999)],
                ids=["int16", "float32"])
def mixed_tiles(request, tmp_path_factory):
    dtype, nodata = request.param
    folder = tmp_path_factory.mktemp(f"compress-{dtype}")
    paths = tile_set(folder, seed=31, grid=(2, 2), size=(150, 110), overlap=20, bands=2,
                     dtype=dtype, nodata=nodata)
    ref = vrt_reference(paths, folder / "ref.tif")
    return dtype, paths, ref


@pytest.mark.parametrize("compress", ["lzw", "deflate", "zstd", "none"])
def test_compression_round_trips_with_the_right_predictor(mixed_tiles, tmp_path, compress):
    dtype, paths, ref = mixed_tiles
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--compress", compress, "--chunk", "256", "--quiet", check=True)
    assert_pixels_equal(out, ref)
    ds = gdal.Open(str(out))
    meta = ds.GetMetadata("IMAGE_STRUCTURE")
    if compress == "none":
        assert "COMPRESSION" not in meta and "PREDICTOR" not in meta
    else:
        assert meta["COMPRESSION"] == compress.upper()
        assert meta["PREDICTOR"] == ("3" if dtype.startswith("float") else "2")
    assert ds.RasterXSize < 512 and ds.RasterYSize < 512
    for b in range(1, ds.RasterCount + 1):
        assert ds.GetRasterBand(b).GetBlockSize() == [256, 256]  # tiled, small grid


@pytest.mark.parametrize("options,predictor,block", [
    (["--co", "PREDICTOR=1"], None, 512),
    (["--co", "BLOCKXSIZE=128", "--co", "BLOCKYSIZE=128"], "2", 128),
    (["--co", "predictor=1", "--co", "BLOCKXSIZE=256", "--co", "BLOCKYSIZE=256"], None, 256),
])
def test_creation_options_override_the_defaults(tmp_path, options, predictor, block):
    paths = tile_set(tmp_path, seed=41, grid=(1, 2), size=(300, 200), dtype="uint16", nodata=0)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--compress", "deflate", "--quiet", *options, check=True)
    assert_pixels_equal(out, vrt_reference(paths, tmp_path / "ref.tif"))
    ds = gdal.Open(str(out))
    assert ds.RasterXSize >= 512
    meta = ds.GetMetadata("IMAGE_STRUCTURE")
    assert meta["COMPRESSION"] == "DEFLATE" and meta.get("PREDICTOR") == predictor
    assert ds.GetRasterBand(1).GetBlockSize() == [block, block]


def test_large_grids_use_512_pixel_tiles(tmp_path):
    paths = tile_set(tmp_path, seed=42, grid=(1, 2), size=(300, 200), dtype="uint8", nodata=0)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--quiet", check=True)
    ds = gdal.Open(str(out))
    assert ds.RasterXSize >= 512 and ds.GetRasterBand(1).GetBlockSize() == [512, 512]


@pytest.mark.parametrize("co", ["BLOCKXSIZE=100", "NOEQUALS"])
def test_bad_creation_options_are_refused(tmp_path, co):
    paths = tile_set(tmp_path, seed=43, grid=(1, 1), size=(60, 40), dtype="uint8", nodata=0)
    out = tmp_path / "out.tif"
    one_error_line(run_cli(*paths, "-o", out, "--co", co), "CREATION_OPTIONS")
    assert not os.path.exists(out)


# -------------------------------------------------------------- COG and OVERVIEWS

# Four tiles whose union is 1350 x 750 px of 10 m; EXTENT cuts an even 1300 x 700
# grid out of it, so every overview level halves exactly.
EVEN_EXTENT = "500200,4992700,513200,4999700"


@pytest.fixture(scope="module")
def big_tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overviews")
    return tile_set(folder, seed=51, grid=(2, 2), size=(700, 400), overlap=50,
                    dtype="uint16", nodata=0)


def expected_levels(width, height, block):
    """Halve (rounding up) until the level fits in one block; written independently of
    core/writer.overview_factors."""
    levels = []
    w, h = width, height
    while w > block or h > block:
        w, h = -(-w // 2), -(-h // 2)
        levels.append((w, h))
    return levels


def test_expected_levels_example():
    assert expected_levels(1300, 700, 512) == [(650, 350), (325, 175)]
    assert expected_levels(1300, 700, 256) == [(650, 350), (325, 175), (163, 88)]
    assert expected_levels(500, 300, 512) == []


@pytest.mark.parametrize("chunk,block", [("0", 512), ("256", 256)])
def test_overviews_have_the_right_levels_and_are_averages(big_tiles, tmp_path, chunk, block):
    out = tmp_path / "out.tif"
    run_cli(*big_tiles, "-o", out, "--extent", EVEN_EXTENT, "--overviews", "--chunk", chunk,
            "--quiet", check=True)
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert (ds.RasterXSize, ds.RasterYSize) == (1300, 700)
    assert band.GetBlockSize() == [block, block]
    levels = [(band.GetOverview(i).XSize, band.GetOverview(i).YSize)
              for i in range(band.GetOverviewCount())]
    assert levels == expected_levels(1300, 700, block)

    base = band.ReadAsArray().astype(np.int64)
    valid = base != 0
    assert 0.5 < valid.mean() < 1  # nodata holes and collars are part of the test
    lo, hi = base[valid].min(), base[valid].max()
    for i in range(band.GetOverviewCount()):
        ovr = band.GetOverview(i).ReadAsArray().astype(np.int64)
        assert ovr[ovr != 0].min() >= lo and ovr[ovr != 0].max() <= hi
    # Level 1 is the 2 x 2 mean of the base where all four pixels are valid,
    # and nodata where none is.
    ovr = band.GetOverview(0).ReadAsArray().astype(np.float64)
    blocks = base.reshape(350, 2, 650, 2)
    count = valid.reshape(350, 2, 650, 2).sum(axis=(1, 3))
    mean = blocks.sum(axis=(1, 3)) / 4
    full = count == 4
    assert full.mean() > 0.5
    assert np.abs(ovr[full] - mean[full]).max() <= 1
    assert (ovr[count == 0] == 0).all()
    # Overviews were added to the same pixels a plain mosaic has.
    plain = tmp_path / "plain.tif"
    run_cli(*big_tiles, "-o", plain, "--extent", EVEN_EXTENT, "--chunk", chunk, "--quiet",
            check=True)
    np.testing.assert_array_equal(read(out)[0], read(plain)[0])
    assert gdal.Open(str(plain)).GetRasterBand(1).GetOverviewCount() == 0


@pytest.mark.parametrize("chunk,block", [("0", 512), ("256", 256)])
def test_cog_output_is_valid_and_identical_to_the_plain_mosaic(big_tiles, tmp_path, chunk,
                                                              block):
    out = tmp_path / "out.tif"
    plain = tmp_path / "plain.tif"
    run_cli(*big_tiles, "-o", out, "--extent", EVEN_EXTENT, "--cog", "--chunk", chunk,
            "--quiet", check=True)
    run_cli(*big_tiles, "-o", plain, "--extent", EVEN_EXTENT, "--chunk", chunk, "--quiet",
            check=True)
    assert sorted(os.listdir(tmp_path)) == ["out.tif", "plain.tif"]  # no *.partial left
    warnings, errors, _details = validate_cog(str(out), full_check=True)
    assert errors == [] and warnings == []
    ds = gdal.Open(str(out))
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "LZW"
    band = ds.GetRasterBand(1)
    assert band.GetBlockSize() == [block, block]
    sizes = [(band.GetOverview(i).XSize, band.GetOverview(i).YSize)
             for i in range(band.GetOverviewCount())]
    assert len(sizes) >= 1
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip([(1300, 700)] + sizes, sizes))
    assert sizes[-1][0] <= block and sizes[-1][1] <= block
    assert_pixels_equal(out, plain)


# ---------------------------------------------------------------------- OUTPUT name

@pytest.mark.parametrize("name", ["out.tif", "out.tiff", "OUT.TIFF", "out.Tif"])
def test_tif_and_tiff_outputs_are_accepted_in_any_case(tmp_path, name):
    paths = tile_set(tmp_path, seed=61, grid=(1, 1), size=(60, 40), dtype="uint8", nodata=0)
    run_cli(*paths, "-o", tmp_path / name, "--quiet", check=True)
    assert gdal.Open(str(tmp_path / name)).GetDriver().ShortName == "GTiff"


@pytest.mark.parametrize("name", ["out.png", "out.tif.bak", "out", "out.tif ", "out.vrt"])
def test_other_output_extensions_are_refused(tmp_path, name):
    paths = tile_set(tmp_path, seed=62, grid=(1, 1), size=(60, 40), dtype="uint8", nodata=0)
    before = sorted(os.listdir(tmp_path))
    one_error_line(run_cli(*paths, "-o", tmp_path / name), "OUTPUT", ".tif")
    assert sorted(os.listdir(tmp_path)) == before
