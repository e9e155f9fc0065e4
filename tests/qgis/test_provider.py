"""The plugin loads in a real headless QGIS and the mosaic runs through processing.run."""

import numpy as np
from osgeo import gdal

from helpers import read, tile_set, vrt_reference


def test_provider_and_algorithms_are_registered(registry):
    provider = registry.providerById("streamingmosaic")
    assert provider is not None and provider.name() == "Streaming Mosaic"
    alg = registry.algorithmById("streamingmosaic:mosaic")
    assert alg.displayName() == "Mosaic rasters (streaming)"
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names[:3] == ["INPUT", "METHOD", "PERCENTILE"] and names[-1] == "OUTPUT"
    assert registry.algorithmById("streamingmosaic:plan") is not None


def test_processing_run_matches_gdal(qgis_app, tmp_path):
    import processing
    paths = tile_set(tmp_path, seed=5, grid=(2, 3), size=(200, 150), overlap=30, bands=2,
                     dtype="uint16")
    out = str(tmp_path / "q.tif")
    cache = gdal.GetCacheMax()
    result = processing.run("streamingmosaic:mosaic", {"INPUT": paths, "OUTPUT": out,
                                                       "CHUNK_SIZE": 256})
    assert result["OUTPUT"] == out
    assert gdal.GetCacheMax() == cache
    got, gt, _ = read(out)
    want, want_gt, _ = read(vrt_reference(paths, tmp_path / "ref.tif"))
    assert gt == want_gt
    np.testing.assert_array_equal(got, want)
