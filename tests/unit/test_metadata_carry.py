"""Band metadata (scale, offset, unit, description, colour interpretation, colour table) is
carried to the output where the inputs agree and never mixed silently; paletted inputs keep
their indices (nearest resampling, NEAREST overviews)."""

import os

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, run_cli, vrt_reference, write_raster
from streaming_mosaic.core import bandmeta
from streaming_mosaic.core.errors import InputError
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan
from streaming_mosaic.core.sources import describe

RES = 10.0
RGB = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)


def band_meta(band):
    """What a band says about its values, read with GDAL (the reference)."""
    table = band.GetColorTable()
    entries = None if table is None else [table.GetColorEntry(i)
                                          for i in range(table.GetCount())]
    return {"scale": band.GetScale() or 1.0, "offset": band.GetOffset() or 0.0,
            "unit": band.GetUnitType(), "description": band.GetDescription(),
            "color": gdal.GetColorInterpretationName(band.GetColorInterpretation()),
            "table": entries}


def file_meta(path):
    ds = gdal.Open(str(path))
    return [band_meta(ds.GetRasterBand(b)) for b in range(1, ds.RasterCount + 1)]


def tile(path, x, data, nodata=0, scale=None, offset=None, unit=None, description=None,
         color=None, table=None, y=0.0):
    """A GeoTIFF at pixel column ``x``; per-band metadata given as lists (one per band)."""
    data = np.asarray(data)
    data = data if data.ndim == 3 else data[None]
    write_raster(path, data, (x * RES, RES, 0, 1000 - y * RES, 0, -RES), nodata=nodata)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in range(data.shape[0]):
        band = ds.GetRasterBand(b + 1)
        if scale is not None:
            band.SetScale(scale[b])
        if offset is not None:
            band.SetOffset(offset[b])
        if unit is not None:
            band.SetUnitType(unit[b])
        if description is not None:
            band.SetDescription(description[b])
        if color is not None:
            band.SetColorInterpretation(color[b])
        if table is not None and b == 0:
            ct = gdal.ColorTable()
            for i, entry in enumerate(table):
                ct.SetColorEntry(i, entry)
            band.SetColorTable(ct)
    ds = None
    return str(path)


def values(seed, shape, low=1, high=250, dtype=np.uint16):
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


def described(path, x, seed, **kw):
    """A 3-band uint16 tile whose band b has scale 0.01 b, offset b, unit u<b>, description
    B<b> and colour red, green, blue."""
    meta = dict(scale=[0.01, 0.02, 0.03], offset=[1.0, 2.0, 3.0], unit=["u1", "u2", "u3"],
                description=["B1", "B2", "B3"], color=RGB)
    meta.update(kw)
    return tile(path, x, values(seed, (3, 40, 50)), **meta)


def one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def warnings(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("warning:")]


# --------------------------------------------------------------------------- carried

@pytest.mark.parametrize("finish", [(), ("--overviews",), ("--cog",)])
def test_agreeing_band_metadata_is_carried_in_bands_order(tmp_path, finish):
    a = described(tmp_path / "a.tif", 0, 1)
    b = described(tmp_path / "b.tif", 30, 2)
    out = tmp_path / "out.tif"
    run_cli(a, b, "-o", out, "--bands", "3,1", "--chunk", "256", *finish, "--quiet", check=True)
    source = file_meta(a)
    assert file_meta(out) == [source[2], source[0]]
    assert file_meta(out)[0]["color"] == "Blue" and file_meta(out)[0]["scale"] == 0.03
    # (gdalbuildvrt -b 3 -b 1 of GDAL 3.6 compares offsets across bands and drops b.tif)
    want = read(vrt_reference([a, b], tmp_path / "ref.tif"))[0][[2, 0]]
    np.testing.assert_array_equal(read(out)[0], want)
    assert not os.path.exists(str(out) + ".aux.xml")  # all of it inside the GeoTIFF


def test_differing_descriptions_and_colours_are_left_out_and_the_rest_carried(tmp_path):
    a = described(tmp_path / "a.tif", 0, 1)
    b = described(tmp_path / "b.tif", 30, 2, description=["x", "B2", "B3"],
                  color=(gdal.GCI_GrayIndex, gdal.GCI_Undefined, gdal.GCI_Undefined))
    out = tmp_path / "out.tif"
    proc = run_cli(a, b, "-o", out, check=True)
    got, source = file_meta(out), file_meta(a)
    assert [m["description"] for m in got] == ["", "B2", "B3"]
    assert [m["color"] for m in got] == ["Gray", "Undefined", "Undefined"]
    assert [(m["scale"], m["offset"], m["unit"]) for m in got] == \
        [(m["scale"], m["offset"], m["unit"]) for m in source]
    assert any("colour interpretation" in w and "a.tif" in w and "b.tif" in w
               for w in warnings(proc)), proc.stderr


# --------------------------------------------------------------------------- refused

@pytest.mark.parametrize("field,change", [
    ("scale", dict(scale=[0.01, 0.02, 0.05])),
    ("offset", dict(offset=[1.0, -2.0, 3.0])),
    ("unit", dict(unit=["u1", "u2", "ft"])),
])
def test_inputs_whose_values_mean_different_things_are_refused(tmp_path, field, change):
    a = described(tmp_path / "a.tif", 0, 1)
    b = described(tmp_path / "second.tif", 30, 2, **change)
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    line = one_error_line(run_cli(a, b, "-o", out))
    assert "second.tif" in line and "a.tif" in line and field in line, line
    assert os.listdir(out.parent) == []
    with pytest.raises(InputError):
        make_plan(Options(inputs=[a, b]))
    # Counting valid inputs does not look at the values: allowed.
    count = tmp_path / "count.tif"
    run_cli(a, b, "-o", count, "--method", "count", "--quiet", check=True)
    assert [m["scale"] for m in file_meta(count)] == [1.0] * 3
    assert all(m["unit"] == "" and m["table"] is None for m in file_meta(count))


def test_a_unit_missing_from_one_input_is_not_carried(tmp_path):
    a = described(tmp_path / "a.tif", 0, 1)
    b = described(tmp_path / "b.tif", 30, 2, unit=["u1", "", "u3"])
    out = tmp_path / "out.tif"
    proc = run_cli(a, b, "-o", out, check=True)
    assert [m["unit"] for m in file_meta(out)] == ["u1", "", "u3"]
    assert any("unit" in w and "b.tif" in w for w in warnings(proc)), proc.stderr


def test_sum_does_not_claim_an_offset_it_cannot_have(tmp_path):
    a = described(tmp_path / "a.tif", 0, 1)
    b = described(tmp_path / "b.tif", 30, 2)
    out = tmp_path / "out.tif"
    proc = run_cli(a, b, "-o", out, "--method", "sum", "--dtype", "uint32", check=True)
    assert [(m["scale"], m["offset"]) for m in file_meta(out)] == [(1.0, 0.0)] * 3
    assert any("offset" in w for w in warnings(proc)), proc.stderr
    zero = tmp_path / "zero.tif"
    a0 = described(tmp_path / "a0.tif", 0, 1, offset=[0.0] * 3)
    b0 = described(tmp_path / "b0.tif", 30, 2, offset=[0.0] * 3)
    run_cli(a0, b0, "-o", zero, "--method", "sum", "--dtype", "uint32", "--quiet", check=True)
    assert [m["scale"] for m in file_meta(zero)] == [0.01, 0.02, 0.03]


# --------------------------------------------------------------------------- colour tables

PALETTE = [(0, 0, 0, 0), (255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255)] + \
    [(i, i, i, 255) for i in range(4, 256)]


def classes(seed, shape=(60, 70)):
    """Class indices 10 and 200 in blocks of 4 px (averaging them gives another class)."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(np.array([10, 200], np.uint8), (shape[0] // 4 + 1, shape[1] // 4 + 1))
    return np.kron(blocks, np.ones((4, 4), np.uint8))[:shape[0], :shape[1]]


def overview_arrays(path):
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    return [band.GetOverview(i).ReadAsArray() for i in range(band.GetOverviewCount())]


@pytest.mark.parametrize("finish", ["overviews", "cog"])
def test_identical_colour_tables_are_carried_with_nearest_overviews(tmp_path, finish):
    paths = [tile(tmp_path / f"p{i}.tif", 50 * i, classes(i), table=PALETTE) for i in range(3)]
    out = tmp_path / "out.tif"
    small_tiles = ("--co", "BLOCKXSIZE=32", "--co", "BLOCKYSIZE=32")
    run_cli(*paths, "-o", out, f"--{finish}", *small_tiles, "--quiet", check=True)
    assert file_meta(out)[0]["table"] == file_meta(paths[0])[0]["table"]
    assert file_meta(out)[0]["color"] == "Palette"
    ref = vrt_reference(paths, tmp_path / "ref.tif")
    np.testing.assert_array_equal(read(out)[0], read(ref)[0])
    # GDAL's own overviews of the same mosaic: nearest for a paletted raster.
    if finish == "cog":
        want = gdal.Translate(str(tmp_path / "refcog.tif"), ref, format="COG",
                              creationOptions=["BLOCKSIZE=128"])
        want = None
        want_ovr = overview_arrays(tmp_path / "refcog.tif")
    else:
        ds = gdal.Open(ref, gdal.GA_Update)
        ds.BuildOverviews("NEAREST", [2, 4])
        ds = None
        want_ovr = overview_arrays(ref)
    got_ovr = overview_arrays(out)
    assert len(got_ovr) >= 1
    for got, want in zip(got_ovr, want_ovr):
        assert set(np.unique(got)) <= {0, 10, 200}
        np.testing.assert_array_equal(got, want)


def test_different_colour_tables_are_refused_for_last_and_dropped_for_mean(tmp_path):
    other = [(e[2], e[1], e[0], e[3]) for e in PALETTE]  # red and blue swapped
    a = tile(tmp_path / "a.tif", 0, classes(1), table=PALETTE)
    b = tile(tmp_path / "b.tif", 50, classes(2), table=other)
    out = tmp_path / "out.tif"
    line = one_error_line(run_cli(a, b, "-o", out))
    assert "colour table" in line and "a.tif" in line and "b.tif" in line
    assert not out.exists()
    proc = run_cli(a, b, "-o", out, "--method", "mean", check=True)
    assert file_meta(out)[0]["table"] is None
    assert any("colour table" in w for w in warnings(proc)), proc.stderr


def test_a_shorter_table_that_agrees_is_the_same_palette(tmp_path):
    a = tile(tmp_path / "a.tif", 0, classes(1), table=PALETTE)
    b = tile(tmp_path / "b.tif", 50, classes(2), table=PALETTE)
    # A GeoTIFF pads its table to 256 entries: a VRT can hold a shorter one.
    vrt = str(tmp_path / "b.vrt")
    gdal.Translate(vrt, b, format="VRT")
    text = open(vrt, encoding="utf-8").read()
    start = text.index("<ColorTable>")
    entries = text[start:text.index("</ColorTable>")].split("<Entry")[:1 + 201]
    short = text[:start] + "<Entry".join(entries) + text[text.index("</ColorTable>"):]
    with open(vrt, "w", encoding="utf-8") as fh:
        fh.write(short)
    ds = gdal.Open(vrt)
    assert ds.GetRasterBand(1).GetColorTable().GetCount() == 201
    ds = None
    out = tmp_path / "out.tif"
    run_cli(a, vrt, "-o", out, "--quiet", check=True)
    assert file_meta(out)[0]["table"] == file_meta(a)[0]["table"]


def test_paletted_input_is_resampled_as_nearest_with_a_warning(tmp_path):
    a = tile(tmp_path / "a.tif", 0, classes(1), table=PALETTE)
    b = tile(tmp_path / "b.tif", 40.5, classes(2), table=PALETTE, y=0.5)  # off the grid
    out = tmp_path / "out.tif"
    proc = run_cli(a, b, "-o", out, "--resampling", "bilinear", check=True)
    assert any("colour table" in w and "nearest" in w and "bilinear" in w
               for w in warnings(proc)), proc.stderr
    ref = vrt_reference([a, b], tmp_path / "ref.tif", resampleAlg="nearest")
    got = read(out)[0]
    assert set(np.unique(got)) <= {0, 10, 200}
    np.testing.assert_array_equal(got, read(ref)[0])


@pytest.mark.parametrize("options", [["TILED=YES"], ["BIGTIFF=YES"], "sidecar"])
def test_units_read_from_the_geotiff_tag_are_gdals(tmp_path, options):
    """Units come from the GDAL_METADATA tag (GDAL's GetUnitType looks the CRS up for a
    band without one); they must be what GDAL says, in GeoTIFFs of every layout, and
    come from GDAL when a .aux.xml beside the file may hold them."""
    path = str(tmp_path / "u.tif")
    sidecar = options == "sidecar"
    write_raster(path, values(1, (3, 20, 30)), (0, RES, 0, 300, 0, -RES),
                 options=None if sidecar else options)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetUnitType("metre")
    ds.GetRasterBand(3).SetUnitType("K")
    ds = None
    if sidecar:
        with open(path + ".aux.xml", "w", encoding="utf-8") as fh:
            fh.write('<PAMDataset><PAMRasterBand band="2"><UnitType>ft</UnitType>'
                     '</PAMRasterBand></PAMDataset>')
    info = describe(0, path)
    ds = gdal.Open(path)
    assert [m.unit for m in info.band_meta] == \
        [ds.GetRasterBand(b).GetUnitType() for b in (1, 2, 3)] == \
        ["metre", "ft" if sidecar else "", "K"]
    assert (bandmeta.tiff_units(path) is None) == sidecar


def test_a_data_band_marked_alpha_does_not_become_the_outputs_mask(tmp_path):
    paths = []
    for i in range(2):
        data = values(i, (3, 30, 40), dtype=np.uint8)
        data[2] = 255
        path = write_raster(tmp_path / f"a{i}.tif", data, (i * 300.0, RES, 0, 300, 0, -RES),
                            nodata=0)
        ds = gdal.Open(path, gdal.GA_Update)  # band 2 says alpha too; band 3 is the alpha band
        for b in (2, 3):
            ds.GetRasterBand(b).SetColorInterpretation(gdal.GCI_AlphaBand)
        ds = None
        paths.append(path)
    assert [m["color"] for m in file_meta(paths[0])][1:] == ["Alpha", "Alpha"]
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--quiet", check=True)
    assert file_meta(out)[0]["color"] == file_meta(paths[0])[0]["color"]
    assert file_meta(out)[1]["color"] == "Undefined"
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(1).GetMaskFlags() == gdal.GMF_NODATA
