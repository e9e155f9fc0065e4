"""The GeoKey cache gives every GeoTIFF exactly the CRS GDAL reads from it."""

import numpy as np
import pytest
from osgeo import gdal, osr

from streaming_mosaic.core import geokeys
from streaming_mosaic.core.sources import describe

LAEA = ('PROJCS["custom LAEA",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,'
        '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
        'PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52.5],'
        'PARAMETER["longitude_of_center",11.25],PARAMETER["false_easting",4321000],'
        'PARAMETER["false_northing",3210000],UNIT["metre",1]]')
CRS = [("EPSG:32632", []), ("EPSG:32633", []), ("EPSG:4326", []), ("EPSG:3857", []),
       (LAEA, []), ("EPSG:32633", ["BIGTIFF=YES"]), ("EPSG:32632", ["ENDIANNESS=BIG"]),
       ("EPSG:2154", ["BIGTIFF=YES", "ENDIANNESS=BIG"]), (None, [])]


def _write(path, crs, options):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 1, gdal.GDT_Byte, options)
    ds.SetGeoTransform((1000, 1, 0, 2000, 0, -1))
    if crs:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(crs)
        ds.SetSpatialRef(srs)
    ds.GetRasterBand(1).WriteArray(np.ones((8, 8), np.uint8))
    ds = None
    return str(path)


def _gdal_wkt(path):
    srs = gdal.Open(path).GetSpatialRef()
    return srs.ExportToWkt() if srs else ""


def test_cached_crs_equals_gdals_for_every_kind_of_geotiff(tmp_path):
    geokeys._cache.clear()
    paths = [_write(tmp_path / f"f{i}.tif", crs, opts) for i, (crs, opts) in enumerate(CRS)]
    twice = paths + paths  # the second pass is served from the cache
    got = [describe(i, p).crs_wkt for i, p in enumerate(twice)]
    assert got == [_gdal_wkt(p) for p in twice]
    assert len(set(got)) == len({c for c, _ in CRS})  # different CRS never share an entry
    assert len(geokeys._cache) >= 7


@pytest.mark.parametrize("name", ["side.tif.aux.xml", None])
def test_files_that_gdal_may_georeference_otherwise_are_not_cached(tmp_path, name):
    path = _write(tmp_path / "side.tif", "EPSG:32633", [])
    if name:
        (tmp_path / name).write_text("<PAMDataset/>")
        assert geokeys.raw_keys(path) is None
    else:
        assert geokeys.raw_keys(path) is not None
    assert geokeys.raw_keys(str(tmp_path / "nothing.tif")) is None
