"""Graphical models: the shipped example model runs in QGIS and in qgis_process, and a model can
feed every parameter of streamingmosaic:mosaic from its own inputs."""

import os

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, tile_set, vrt_reference
from streaming_mosaic.core.options import PARAMS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "resources", "models", "mosaic_then_hillshade.model3")
HILLSHADE = {"Z_FACTOR": 1.0, "AZIMUTH": 300.0, "V_ANGLE": 40.0}


@pytest.fixture(scope="module")
def dem_tiles(tmp_path_factory):
    """Elevation-like float32 tiles (metres) with nodata collars and holes."""
    folder = tmp_path_factory.mktemp("dem")
    return tile_set(folder, seed=41, grid=(2, 2), size=(130, 110), overlap=20, dtype="float32",
                    low=100.0, high=900.0, nodata=-9999)


@pytest.fixture(scope="module")
def expected_hillshade(qgis_app, dem_tiles, tmp_path_factory):
    """native:hillshade of GDAL's own mosaic of the tiles (gdalbuildvrt + gdal_translate)."""
    import processing
    folder = tmp_path_factory.mktemp("ref")
    mosaic = vrt_reference(dem_tiles, folder / "mosaic.tif")
    out = str(folder / "hillshade.tif")
    processing.run("native:hillshade", dict(HILLSHADE, INPUT=mosaic, OUTPUT=out))
    return read(mosaic), read(out)


def _load(path):
    from qgis.core import QgsProcessingModelAlgorithm
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(path), path
    return model


def _check_hillshade(path, expected):
    (mosaic, mosaic_gt, _), (want, want_gt, _) = expected
    got, gt, _ = read(path)
    assert gt == mosaic_gt == want_gt
    assert got.shape[1:] == mosaic.shape[1:]
    np.testing.assert_array_equal(got, want)
    # Non-trivial shading: many distinct values, not a constant image.
    assert np.unique(got).size > 50 and got.std() > 1


def _summary(model):
    """What a model does, independent of how a QGIS version lays out the .model3 file."""
    children = {}
    for child_id, child in model.childAlgorithms().items():
        sources = {name: [(s.source(), s.staticValue(), s.parameterName(), s.outputChildId(),
                           s.outputName()) for s in values]
                   for name, values in child.parameterSources().items()}
        outputs = {name: (o.childId(), o.childOutputName())
                   for name, o in child.modelOutputs().items()}
        children[child_id] = (child.algorithmId(), sources, outputs)
    # QGIS >= 3.38 names a new model's output parameters differently ("hillshade" instead of
    # 3.22's "hillshade:Hillshade"); a saved model keeps its names, so compare types only.
    params = [(None if d.isDestination() else d.name(), d.type(), d.description())
              for d in model.parameterDefinitions()]
    return model.name(), model.group(), params, children


def test_shipped_model_is_the_builder_output(qgis_app, tmp_path):
    from build_models import mosaic_then_hillshade
    built = mosaic_then_hillshade()
    rebuilt = str(tmp_path / "rebuilt.model3")
    assert built.toFile(rebuilt)
    shipped = _load(MODEL)
    assert _summary(shipped) == _summary(_load(rebuilt)) == _summary(built), \
        "resources/models is stale: run tools/build_models.py"
    assert [p.name() for p in shipped.parameterDefinitions()] == ["rasters", "hillshade:Hillshade"]
    assert sorted(shipped.childAlgorithms()) == ["hillshade", "mosaic"]
    assert shipped.childAlgorithm("mosaic").algorithmId() == "streamingmosaic:mosaic"
    assert shipped.childAlgorithm("hillshade").parameterSources()["INPUT"][0].outputChildId() \
        == "mosaic"
def test_shipped_model_runs_with_processing_run(qgis_app, dem_tiles, expected_hillshade, tmp_path):
    import processing
    out = str(tmp_path / "hs.tif")
    result = processing.run(_load(MODEL), {"rasters": dem_tiles, "hillshade:Hillshade": out})
    assert result["hillshade:Hillshade"] == out
    _check_hillshade(out, expected_hillshade)


def test_shipped_model_runs_with_qgis_process(qgis_process_enabled, dem_tiles, expected_hillshade,
                                              tmp_path):
    out = str(tmp_path / "hs.tif")
    proc = qgis_process_enabled("run", MODEL, "--", *[f"rasters={p}" for p in dem_tiles],
                                f"hillshade:Hillshade={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_hillshade(out, expected_hillshade)


def _every_parameter_model(registry):
    """A model whose single child takes every mosaic parameter from a model input."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source
    alg = registry.algorithmById("streamingmosaic:mosaic")
    model = QgsProcessingModelAlgorithm("every parameter", "tests", "tests")
    child = QgsProcessingModelChildAlgorithm("streamingmosaic:mosaic")
    child.setChildId("mosaic")
    fed = []
    for definition in alg.parameterDefinitions():
        if definition.isDestination():
            continue
        name = definition.name()
        model.addModelParameter(definition.clone(), QgsProcessingModelParameter(name))
        child.addParameterSources(name, [Source.fromModelParameter(name)])
        fed.append(name)
    output = QgsProcessingModelOutput("mosaic_out", "Mosaic")
    output.setChildId("mosaic")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"mosaic_out": output})
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    return model, fed


def test_model_feeds_every_parameter_from_model_inputs(qgis_app, registry, tmp_path):
    import processing
    from qgis.core import QgsProcessingModelChildParameterSource as Source
    model, fed = _every_parameter_model(registry)
    contract = [d.name() for d in registry.algorithmById("streamingmosaic:mosaic")
                .parameterDefinitions() if not d.isDestination()]
    assert fed == contract and len(fed) == len([p for p in PARAMS if p.kind != "output"])
    child = model.childAlgorithm("mosaic")
    for name in fed:
        sources = child.parameterSources()[name]
        assert [s.source() for s in sources] == [Source.fromModelParameter(name).source()]

    # Two 3-band uint16 tiles; the values below all differ from the defaults.
    tiles = tile_set(tmp_path, seed=42, grid=(1, 2), size=(160, 120), overlap=40, bands=3,
                     dtype="uint16")
    x0, y0 = 500000.0, 5000000.0
    values = {
        "INPUT": tiles, "METHOD": 7, "FEATHER_DISTANCE": 6.0, "NODATA_INPUT": 1500,
        "NODATA_OUTPUT": 65535, "TARGET_CRS": "EPSG:32633", "RESAMPLING": 1, "RESOLUTION": 1,
        "PIXEL_SIZE": 20.0, "TARGET_ALIGNED_PIXELS": True,
        "EXTENT": f"{x0 + 105},{x0 + 2405},{y0 - 1095},{y0 - 5} [EPSG:32633]",
        "BANDS": "3,1", "DATA_TYPE": 6, "COMPRESSION": 2,
        "CREATION_OPTIONS": "BLOCKXSIZE=64|BLOCKYSIZE=64", "COG": False, "OVERVIEWS": True,
        "CHUNK_SIZE": 64, "MEMORY_MB": 64, "THREADS": 1, "RESUME": False,
        "PERCENTILE": 25.0, "ORDER": 2, "ADD_ALPHA": True, "HARMONIZE": 1,
        "DASK_SCHEDULER": "", "WORK_FOLDER": "",
    }
    assert sorted(values) == sorted(fed)
    out = str(tmp_path / "model.tif")
    # "mosaic:mosaic_out" on QGIS 3.22; QGIS >= 3.38 names it after the output.
    [destination] = [d.name() for d in model.destinationParameterDefinitions()]
    result = processing.run(model, dict(values, **{destination: out}))
    assert result[destination] == out

    ds = gdal.Open(out)
    gt = ds.GetGeoTransform()
    assert (gt[1], gt[5]) == (20.0, -20.0)                           # PIXEL_SIZE
    assert gt[0] % 20 == 0 and gt[3] % 20 == 0                       # TARGET_ALIGNED_PIXELS
    assert (gt[0], gt[3]) == (x0 + 100, y0)                          # EXTENT, snapped out
    assert (ds.RasterXSize, ds.RasterYSize) == (116, 55)
    assert ds.RasterCount == 3                                       # BANDS + ADD_ALPHA
    assert ds.GetRasterBand(3).GetColorInterpretation() == gdal.GCI_AlphaBand
    band = ds.GetRasterBand(1)
    assert gdal.GetDataTypeName(band.DataType) == "Float32"          # DATA_TYPE
    assert band.GetNoDataValue() == 65535                           # NODATA_OUTPUT
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "ZSTD"  # COMPRESSION
    assert band.GetBlockSize() == [64, 64]                           # CREATION_OPTIONS
    assert band.GetOverviewCount() > 0                               # OVERVIEWS
    assert ds.GetSpatialRef().GetAuthorityCode(None) == "32633"      # TARGET_CRS
    ds = None

    # The model passed every value through: the same call straight to the algorithm matches.
    direct = str(tmp_path / "direct.tif")
    processing.run("streamingmosaic:mosaic", dict(values, OUTPUT=direct))
    got, _, _ = read(out)
    want, _, _ = read(direct)
    np.testing.assert_array_equal(got, want)
    # ... and differs from the defaults of the values that change pixels.
    for name, default in (("METHOD", 0), ("NODATA_INPUT", None), ("RESAMPLING", 0),
                          ("FEATHER_DISTANCE", 32.0)):
        other = str(tmp_path / f"default_{name}.tif")
        changed = dict(values, OUTPUT=other)
        changed[name] = default
        processing.run("streamingmosaic:mosaic", changed)
        assert not np.array_equal(read(other)[0], got), name
