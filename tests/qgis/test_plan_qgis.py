"""streamingmosaic:plan in a real headless QGIS: its figures agree with the mosaic it plans,
its report and footprints describe the inputs, it warns about risky inputs and reads no pixels."""

import os
import re

import numpy as np
import pytest
from osgeo import gdal, osr

from helpers import read, tile_set, write_raster

CHUNK = 256


def _plan(params):
    import processing
    return processing.run("streamingmosaic:plan", dict({"CHUNK_SIZE": CHUNK}, **params))


def _mosaic(params, feedback=None):
    import processing
    return processing.run("streamingmosaic:mosaic", dict({"CHUNK_SIZE": CHUNK}, **params),
                          feedback=feedback)


TILES = dict(seed=21, grid=(2, 3), size=(230, 170), overlap=20, bands=2, dtype="uint16")


def _bounds(path):
    ds = gdal.Open(path)
    gt = ds.GetGeoTransform()
    return gt[0], gt[3] + ds.RasterYSize * gt[5], gt[0] + ds.RasterXSize * gt[1], gt[3]


def test_plan_figures_match_the_mosaic_it_plans(qgis_app, tiles, tmp_path):
    from qgis.core import QgsProcessingFeedback

    class Windows(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.texts = []

        def setProgressText(self, text):  # noqa: N802 (QGIS's name)
            self.texts.append(text)
            super().setProgressText(text)

    plan = _plan({"INPUT": tiles, "MEMORY_MB": 64})
    out = str(tmp_path / "m.tif")
    feedback = Windows()
    _mosaic({"INPUT": tiles, "MEMORY_MB": 64, "OUTPUT": out}, feedback)
    ds = gdal.Open(out)
    assert (plan["WIDTH"], plan["HEIGHT"]) == (ds.RasterXSize, ds.RasterYSize)
    assert plan["BAND_COUNT"] == ds.RasterCount == 2
    assert plan["OUTPUT_DATA_TYPE"] == "uint16"
    assert plan["OUTPUT_CRS"] == "EPSG:32633"
    gt = ds.GetGeoTransform()
    assert (plan["PIXEL_SIZE_X"], plan["PIXEL_SIZE_Y"]) == (gt[1], -gt[5])
    windows = [t for t in feedback.texts if t.startswith("window ")]
    assert len(windows) == plan["WINDOWS"] > 1
    # 3 x 230 - 2 x 20 = 650 columns, 2 x 170 - 20 = 320 rows in 256 px windows.
    assert plan["WINDOWS"] == 3 * 2
    size_mb = os.path.getsize(out) / 2 ** 20
    assert plan["ESTIMATED_DISK_MB_MIN"] - 0.05 <= size_mb <= plan["ESTIMATED_DISK_MB"] + 0.05
    raw_mb = 650 * 320 * 2 * 2 / 2 ** 20
    assert plan["ESTIMATED_DISK_MB"] <= raw_mb + 0.05
    # Memory: the pixel budget stays within MEMORY_MB (plus the interpreter's own baseline).
    assert 0 < plan["ESTIMATED_MEMORY_MB"] <= 64 + 100
    bigger = _plan({"INPUT": tiles, "MEMORY_MB": 64, "CHUNK_SIZE": 1024})
    assert bigger["WINDOWS"] == 1
    assert bigger["ESTIMATED_MEMORY_MB"] > plan["ESTIMATED_MEMORY_MB"]


def test_report_html_shows_the_figures(qgis_app, tiles, tmp_path):
    report = str(tmp_path / "plan.html")
    plan = _plan({"INPUT": tiles, "REPORT": report})
    assert plan["REPORT"] == report
    with open(report, encoding="utf-8") as fh:
        text = fh.read()
    assert text.lstrip().lower().startswith("<!doctype html")
    assert f"{plan['WIDTH']} x {plan['HEIGHT']} px" in text
    assert re.search(rf"\b{plan['WINDOWS']} of \d+ px", text)
    assert f"{plan['ESTIMATED_MEMORY_MB']} MB" in text
    assert f"{plan['ESTIMATED_DISK_MB']:,}" in text
    for path in tiles:
        assert os.path.basename(path) in text


def test_footprints_have_one_polygon_per_input_covering_it(qgis_app, tiles, tmp_path):
    warped = str(tmp_path / "utm32.tif")
    gdal.Warp(warped, tiles[-1], dstSRS="EPSG:32632")
    inputs = tiles + [warped]
    result = _plan({"INPUT": inputs, "FOOTPRINTS": "TEMPORARY_OUTPUT"})
    layer = result["FOOTPRINTS"]
    assert layer.isValid() and layer.featureCount() == len(inputs)
    assert layer.crs().authid() == "EPSG:32633"
    names = layer.fields().names()
    for field in ("file", "crs", "res_x", "res_y"):
        assert field in names
    features = list(layer.getFeatures())
    assert [f["file"] for f in features] == [os.path.basename(p) for p in inputs]
    for feature, path in zip(features[:-1], tiles):
        assert feature["crs"] == "EPSG:32633"
        assert (feature["res_x"], feature["res_y"]) == (10.0, 10.0)
        box = feature.geometry().boundingBox()
        assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == \
            pytest.approx(_bounds(path))
        assert feature.geometry().area() == pytest.approx(
            (box.width() * box.height()), rel=1e-9)  # a rectangle
    # The reprojected input's outline, in the output CRS, holds its transformed corners.
    last = features[-1]
    assert last["crs"] == "EPSG:32632"
    assert last["res_x"] == pytest.approx(gdal.Open(warped).GetGeoTransform()[1])
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32632)
    dst.ImportFromEPSG(32633)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(src, dst)
    from qgis.core import QgsGeometry, QgsPointXY
    xmin, ymin, xmax, ymax = _bounds(warped)
    polygon = last.geometry().buffer(0.5, 4)
    for x, y in ((xmin, ymin), (xmin, ymax), (xmax, ymin), (xmax, ymax)):
        tx, ty = transform.TransformPoint(x, y)[:2]
        assert polygon.contains(QgsGeometry.fromPointXY(QgsPointXY(tx, ty)))
    # ... and roughly the footprint of the tile it was warped from.
    original = QgsGeometry.fromRect(features[len(tiles) - 1].geometry().boundingBox())
    overlap = last.geometry().intersection(original).area() / original.area()
    assert overlap > 0.95


def test_warnings_name_risky_inputs(qgis_app, tmp_path):
    base = tile_set(tmp_path, seed=22, grid=(1, 2), size=(80, 60), overlap=10)
    gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    clean = _plan({"INPUT": base})
    assert clean["WARNINGS"] == ""

    warped = str(tmp_path / "other_crs.tif")
    gdal.Warp(warped, base[1], dstSRS="EPSG:32632")
    coarse = write_raster(tmp_path / "coarse.tif", np.full((30, 40), 7, "uint8"),
                          (gt[0], 20.0, 0, gt[3], 0, -20.0), nodata=0)
    bare = write_raster(tmp_path / "bare.tif", np.full((60, 80), 9, "uint8"), gt)
    three = write_raster(tmp_path / "three.tif", np.full((3, 60, 80), 5, "uint8"), gt, nodata=0)
    cases = {
        "mixed CRS": (base + [warped], "other_crs.tif"),
        "different resolutions": (base + [coarse], "2 different resolutions"),
        "no nodata": (base + [bare], "bare.tif"),
        "band count": (base + [three], "three.tif"),
    }
    for key, (inputs, named) in cases.items():
        warnings = _plan({"INPUT": inputs})["WARNINGS"]
        lines = warnings.splitlines()
        hit = [line for line in lines if key.lower() in line.lower()]
        assert hit and named in hit[0], (key, warnings)


def _corrupt_tiles(path):
    """Overwrite every compressed tile of a GeoTIFF with random bytes (header kept)."""
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    bx, by = band.GetBlockSize()
    blocks = []
    for y in range((ds.RasterYSize + by - 1) // by):
        for x in range((ds.RasterXSize + bx - 1) // bx):
            blocks.append((int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF")),
                           int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF"))))
    ds = None
    rng = np.random.default_rng(1)
    with open(path, "r+b") as fh:
        for offset, size in blocks:
            fh.seek(offset)
            fh.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def _readable(path):
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return gdal.Open(path).ReadAsArray() is not None
    except RuntimeError:
        return False
    finally:
        gdal.PopErrorHandler()


def test_plan_reads_no_pixels(qgis_app, tmp_path):
    from qgis.core import QgsProcessingException
    paths = tile_set(tmp_path, seed=23, grid=(1, 2), size=(300, 200), overlap=20)
    _corrupt_tiles(paths[1])
    assert not _readable(paths[1])  # the pixels really are unreadable
    plan = _plan({"INPUT": paths, "REPORT": str(tmp_path / "r.html")})
    assert (plan["WIDTH"], plan["HEIGHT"]) == (580, 200)
    assert os.path.isfile(tmp_path / "r.html")
    with pytest.raises(QgsProcessingException, match=os.path.basename(paths[1])):
        _mosaic({"INPUT": paths, "OUTPUT": str(tmp_path / "m.tif")})
    assert not os.path.exists(tmp_path / "m.tif")
    ok, gt, _ = read(paths[0])
    assert ok.shape == (1, 200, 300)
