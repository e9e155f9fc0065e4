"""Look-alike tiles described once give every input exactly GDAL's own description."""

import numpy as np
from osgeo import gdal, osr

from streaming_mosaic.core import lookalike, sources


def _tile(path, col, row, nodata=0, options=(), point=False, size=8):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_UInt16,
                                              list(options))
    ds.SetGeoTransform((1000.0 + col * size * 2.5, 2.5, 0, 5000.0 - row * size * 2.5, 0, -2.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetSpatialRef(srs)
    if point:
        ds.SetMetadataItem("AREA_OR_POINT", "Point")
    for b in range(1, 4):
        band = ds.GetRasterBand(b)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(np.full((size, size), 100 * b + col + row, np.uint16))
    ds = None
    return str(path)


def _mask(path, internal):
    gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES" if internal else "NO")
    try:
        ds = gdal.Open(path, gdal.GA_Update)
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
        mask = np.full((8, 8), 255, np.uint8)
        mask[:2] = 0
        ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
        ds = None
    finally:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)


def test_every_lookalike_tile_described_as_gdal_describes_it(tmp_path, monkeypatch):
    paths = [_tile(tmp_path / f"t{i:02d}.tif", i % 4, i // 4) for i in range(12)]
    _mask(paths[3], internal=False)  # a .msk beside it
    _mask(paths[5], internal=True)   # a second IFD
    _tile(paths[6], 2, 1, nodata=7)  # another nodata value: another key
    _tile(paths[7], 3, 1, point=True)  # PixelIsPoint: GDAL shifts by half a pixel
    _tile(paths[8], 0, 2, options=["BIGTIFF=YES"])
    ds = gdal.Open(paths[9])
    ds.GetRasterBand(2).SetNoDataValue(5)  # in a .aux.xml beside it
    ds = None
    with open(tmp_path / "t10.tfw", "w") as fh:  # a world file with another origin
        fh.write("2.5\n0\n0\n-2.5\n9000\n9000\n")
    gdal.Unlink(paths[11])
    _tile(paths[11], 3, 2, point=True)
    calls = []
    full = sources._describe_checked
    monkeypatch.setattr(sources, "_describe_checked",
                        lambda i, p, etag=None, bands=None: calls.append(i) or full(i, p, etag, bands))

    fast = sources.describe_all(paths)

    assert fast == [full(i, p) for i, p in enumerate(paths)]
    assert [f.mask_per_dataset for f in fast[3:6]] == [True, False, True]
    assert fast[9].nodata[1] == 5
    # Copied: the plain tiles after the first; and the second PixelIsPoint tile (its
    # key is known not to follow the area formula, so it is described by GDAL too).
    assert sorted(set(range(12)) - set(calls)) == [1, 2, 4]


def test_header_refuses_what_gdal_reads_elsewhere(tmp_path):
    plain = _tile(tmp_path / "a.tif", 0, 0)
    key, scale, tie = lookalike.read_header(plain)
    assert lookalike.geotransform(scale, tie) == gdal.Open(plain).GetGeoTransform()
    masked = _tile(tmp_path / "b.tif", 0, 0)
    _mask(masked, internal=True)
    assert lookalike.read_header(masked) is None
    tiled = _tile(tmp_path / "c.tif", 0, 0, options=["TILED=YES", "BLOCKXSIZE=16",
                                                      "BLOCKYSIZE=16"], size=40)
    assert lookalike.read_header(tiled)[0] != key
    (tmp_path / "d.tif").write_bytes(b"not a tiff at all")
    assert lookalike.read_header(str(tmp_path / "d.tif")) is None
