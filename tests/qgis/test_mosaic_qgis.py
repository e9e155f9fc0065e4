"""streamingmosaic:mosaic through processing.run in a real headless QGIS: methods, progress,
cancel and resume, bad inputs, concurrent runs and the loaded layer's name."""

import os
import threading

import numpy as np
import pytest
from osgeo import gdal

from helpers import checksum, read, tile_set, vrt_reference, write_raster

ALG = "streamingmosaic:mosaic"
CHUNK = 256


# 2 x 3 overlapping float32 tiles, 2 bands, nodata 0 with collars and holes: 540 x 270 px.
TILES = dict(seed=11, grid=(2, 3), size=(200, 150), overlap=30, bands=2, dtype="float32")


@pytest.fixture(scope="module")
def uint_tiles(tmp_path_factory):
    """The same layout in uint16 (compared with GDAL's own mosaic)."""
    folder = tmp_path_factory.mktemp("uint_tiles")
    return tile_set(folder, seed=12, grid=(2, 3), size=(200, 150), overlap=30, bands=2,
                    dtype="uint16")


def _feedback_class():
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        """Records progress calls; optionally reports cancellation once progress >= cancel_at."""

        def __init__(self, cancel_at=None):
            super().__init__()
            self.values, self.texts = [], []
            self.cancel_at = cancel_at
            self.calls_at_cancel = None  # number of progress calls when cancel was first seen

        def setProgress(self, value):  # noqa: N802 (QGIS's name)
            self.values.append(value)
            super().setProgress(value)

        def setProgressText(self, text):  # noqa: N802
            self.texts.append(text)
            super().setProgressText(text)

        def isCanceled(self):  # noqa: N802
            if self.cancel_at is not None and self.values and max(self.values) >= self.cancel_at:
                if self.calls_at_cancel is None:
                    self.calls_at_cancel = len(self.values)
                return True
            return super().isCanceled()

    return Recorder


def _run(params, feedback=None, context=None):
    import processing
    full = {"CHUNK_SIZE": CHUNK}
    full.update(params)
    return processing.run(ALG, full, feedback=feedback, context=context)


def _window_count(params):
    import processing
    plan = dict(params)
    plan.pop("OUTPUT", None)
    plan.pop("RESUME", None)
    plan.setdefault("CHUNK_SIZE", CHUNK)
    return int(processing.run("streamingmosaic:plan", plan)["WINDOWS"])


def _stack(paths, out_gt, shape):
    """Every tile placed on the output grid: values (n, bands, rows, cols) and validity."""
    n_bands, rows, cols = shape
    values = np.zeros((len(paths), n_bands, rows, cols), np.float64)
    valid = np.zeros(values.shape, bool)
    for i, path in enumerate(paths):
        arr, gt, nodata = read(path)
        c0 = int(round((gt[0] - out_gt[0]) / out_gt[1]))
        r0 = int(round((gt[3] - out_gt[3]) / out_gt[5]))
        _, h, w = arr.shape
        values[i, :, r0:r0 + h, c0:c0 + w] = arr
        valid[i, :, r0:r0 + h, c0:c0 + w] = arr != nodata
    return values, valid


def _numpy_reference(method, values, valid):
    """The expected mosaic of an aligned stack, computed independently with numpy."""
    n = valid.sum(axis=0)
    any_valid = n > 0
    masked = np.ma.masked_array(values, ~valid)
    if method == "count":
        return n.astype("uint8")
    if method == "first":
        idx = np.argmax(valid, axis=0)
        out = np.take_along_axis(values, idx[None], axis=0)[0]
    elif method == "last":
        idx = len(values) - 1 - np.argmax(valid[::-1], axis=0)
        out = np.take_along_axis(values, idx[None], axis=0)[0]
    elif method == "min":
        out = masked.min(axis=0).filled(0)
    elif method == "max":
        out = masked.max(axis=0).filled(0)
    elif method == "sum":
        out = masked.sum(axis=0).filled(0)
    elif method == "mean":
        out = masked.mean(axis=0).filled(0)
    else:
        raise ValueError(method)
    return np.where(any_valid, out, 0).astype("float32")


METHODS = ["last", "first", "min", "max", "mean", "sum", "count", "feather"]


@pytest.mark.parametrize("method", range(8), ids=METHODS)
def test_every_method_runs_and_matches_a_numpy_reference(qgis_app, tiles, tmp_path, method):
    out = str(tmp_path / f"m{method}.tif")
    result = _run({"INPUT": tiles, "METHOD": method, "FEATHER_DISTANCE": 8, "OUTPUT": out})
    assert result["OUTPUT"] == out and os.path.isfile(out)
    got, gt, nodata = read(out)
    ref_path = vrt_reference(tiles, tmp_path / "ref.tif")
    last, ref_gt, _ = read(ref_path)
    assert gt == ref_gt and got.shape == last.shape
    values, valid = _stack(tiles, ref_gt, last.shape)
    name = METHODS[method]
    if name == "feather":
        # A blend: within the valid inputs' range, and exact where one input is valid.
        masked = np.ma.masked_array(values, ~valid)
        lo, hi = masked.min(axis=0).filled(0), masked.max(axis=0).filled(0)
        n = valid.sum(axis=0)
        inside = n > 0
        assert np.all(got[inside] >= lo[inside].astype("float32") - 1e-3)
        assert np.all(got[inside] <= hi[inside].astype("float32") + 1e-3)
        single = n == 1
        np.testing.assert_allclose(got[single], lo[single].astype("float32"), rtol=1e-6)
        assert np.all(got[~inside] == 0)
        # The blend differs from simply stacking somewhere in the overlaps.
        assert np.any(np.abs(got[n > 1] - last[n > 1]) > 1e-3)
    else:
        want = _numpy_reference(name, values, valid)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
        if name == "last":
            np.testing.assert_array_equal(got, last)  # and GDAL's own mosaic
    if name == "count":
        assert nodata is None
        assert got.max() >= 2
    else:
        assert nodata == 0


def test_last_is_pixel_identical_to_gdalbuildvrt(qgis_app, uint_tiles, tmp_path):
    out = str(tmp_path / "last.tif")
    _run({"INPUT": uint_tiles, "METHOD": 0, "OUTPUT": out})
    got, gt, nodata = read(out)
    want, want_gt, want_nodata = read(vrt_reference(uint_tiles, tmp_path / "ref.tif"))
    assert (gt, nodata) == (want_gt, want_nodata)
    assert got.dtype == want.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_progress_is_reported_once_per_window(qgis_app, uint_tiles, tmp_path):
    params = {"INPUT": uint_tiles, "OUTPUT": str(tmp_path / "p.tif")}
    windows = _window_count(params)
    assert windows >= 4
    feedback = _feedback_class()()
    _run(params, feedback)
    texts = [t for t in feedback.texts if t.startswith("window ")]
    assert texts == [f"window {i}/{windows}" for i in range(1, windows + 1)]
    assert len(feedback.values) >= windows
    assert feedback.values == sorted(feedback.values)
    assert feedback.values[-1] == pytest.approx(100)


def test_cancel_stops_within_a_window_and_resume_completes(qgis_app, uint_tiles, tmp_path):
    from qgis.core import QgsProcessingException
    out = str(tmp_path / "c.tif")
    params = {"INPUT": uint_tiles, "OUTPUT": out, "THREADS": 2}
    windows = _window_count(params)
    cache = gdal.GetCacheMax()
    feedback = _feedback_class()(cancel_at=30)
    with pytest.raises(QgsProcessingException, match="cancel"):
        _run(params, feedback)
    assert gdal.GetCacheMax() == cache
    assert feedback.calls_at_cancel is not None
    assert len(feedback.values) - feedback.calls_at_cancel <= 1
    done = len([t for t in feedback.texts if t.startswith("window ")])
    assert 0 < done < windows
    assert not os.path.exists(out)
    assert os.path.exists(out + ".partial") and os.path.exists(out + ".partial.json")

    resumed = _feedback_class()()
    _run(dict(params, RESUME=True), resumed)
    assert gdal.GetCacheMax() == cache
    # Only the remaining windows were written.
    assert [t for t in resumed.texts if t.startswith("window ")][0] == f"window {done + 1}/{windows}"
    assert not os.path.exists(out + ".partial") and not os.path.exists(out + ".partial.json")

    clean = str(tmp_path / "clean.tif")
    _run(dict(params, OUTPUT=clean))
    got, gt, _ = read(out)
    want, want_gt, _ = read(clean)
    assert gt == want_gt
    np.testing.assert_array_equal(got, want)


def test_gdal_cache_is_restored_after_success_and_failure(qgis_app, uint_tiles, tmp_path):
    from qgis.core import QgsProcessingException
    cache = gdal.GetCacheMax()
    _run({"INPUT": uint_tiles, "OUTPUT": str(tmp_path / "ok.tif"), "MEMORY_MB": 64})
    assert gdal.GetCacheMax() == cache
    with pytest.raises(QgsProcessingException):
        _run({"INPUT": uint_tiles, "OUTPUT": str(tmp_path / "bad.tif"), "NODATA_OUTPUT": -5,
              "MEMORY_MB": 64})
    assert gdal.GetCacheMax() == cache


def _bad_case(name, folder, paths):
    """(parameters, text the message must contain) for one bad input."""
    out = os.path.join(folder, "out.tif")
    gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    if name == "missing input file":
        missing = os.path.join(folder, "nope.tif")
        return {"INPUT": paths + [missing], "OUTPUT": out}, "nope.tif"
    if name == "non-raster file":
        text = os.path.join(folder, "notes.txt")
        with open(text, "w") as fh:
            fh.write("not a raster\n")
        return {"INPUT": paths + [text], "OUTPUT": out}, "notes.txt"
    if name == "different band counts":
        three = write_raster(os.path.join(folder, "three.tif"), np.ones((3, 40, 40), "uint8"), gt,
                             nodata=0)
        return {"INPUT": paths + [three], "OUTPUT": out}, "three.tif"
    if name == "input without CRS":
        bare = write_raster(os.path.join(folder, "nocrs.tif"), np.ones((40, 40), "uint8"), gt,
                            epsg=None, nodata=0)
        return {"INPUT": paths + [bare], "OUTPUT": out}, "nocrs.tif"
    if name == "OUTPUT equal to an input":
        return {"INPUT": paths, "OUTPUT": paths[0]}, "OUTPUT"
    if name == "output folder missing":
        return {"INPUT": paths, "OUTPUT": os.path.join(folder, "no", "such", "out.tif")}, \
            os.path.join(folder, "no", "such")
    if name == "OUTPUT with a .png extension":
        return {"INPUT": paths, "OUTPUT": os.path.join(folder, "out.png")}, "OUTPUT"
    if name == "invalid BANDS":
        return {"INPUT": paths, "BANDS": "a", "OUTPUT": out}, "BANDS"
    if name == "NODATA_OUTPUT out of range":
        return {"INPUT": paths, "NODATA_OUTPUT": 300, "OUTPUT": out}, "NODATA_OUTPUT"
    if name == "EXTENT meeting no input":
        return {"INPUT": paths, "EXTENT": "100000,101000,100000,101000 [EPSG:32633]",
                "OUTPUT": out}, "EXTENT"
    raise ValueError(name)


BAD = ["missing input file", "non-raster file", "different band counts", "input without CRS",
       "OUTPUT equal to an input", "output folder missing", "OUTPUT with a .png extension",
       "invalid BANDS", "NODATA_OUTPUT out of range", "EXTENT meeting no input"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_a_clear_error_and_touches_nothing(qgis_app, tmp_path, case):
    from qgis.core import QgsProcessingException
    paths = tile_set(tmp_path, seed=3, grid=(1, 2), size=(60, 50), overlap=10)  # uint8
    params, named = _bad_case(case, str(tmp_path), paths)
    before = {p: checksum(p) for p in paths}
    listing = set(os.listdir(tmp_path))
    cache = gdal.GetCacheMax()
    with pytest.raises(QgsProcessingException) as info:
        _run(params)
    message = str(info.value)
    assert named in message, message
    assert "Traceback" not in message
    assert gdal.GetCacheMax() == cache
    assert {p: checksum(p) for p in paths} == before
    if params["OUTPUT"] not in paths:
        assert not os.path.exists(params["OUTPUT"])
    # Nothing new next to the inputs: not even QGIS's statistics side files (.aux.xml),
    # since the algorithm never loads input files as layers.
    assert set(os.listdir(tmp_path)) - listing == set()


def test_a_run_writes_nothing_next_to_its_inputs(qgis_app, tmp_path):
    paths = tile_set(tmp_path, seed=8, grid=(2, 2), size=(80, 60), overlap=10, bands=3,
                     dtype="uint16")
    before = {name: checksum(tmp_path / name) for name in os.listdir(tmp_path)}
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    _run({"INPUT": paths, "OUTPUT": str(out), "OVERVIEWS": True})
    assert {name: checksum(tmp_path / name) for name in os.listdir(tmp_path)
            if name != "out"} == before
    assert os.listdir(out.parent) == ["mosaic.tif"]


def test_concurrent_runs_in_threads_match_sequential_runs(qgis_app, uint_tiles, tmp_path):
    from processing.tools import dataobjects
    from qgis.core import QgsProcessingFeedback
    jobs = [{"INPUT": uint_tiles, "METHOD": 0}, {"INPUT": uint_tiles[::-1], "METHOD": 3,
                                                  "THREADS": 1}]
    sequential = []
    for i, job in enumerate(jobs):
        out = str(tmp_path / f"seq{i}.tif")
        _run(dict(job, OUTPUT=out))
        sequential.append(read(out))

    errors, results = [], {}

    def work(i, job):
        try:
            feedback = QgsProcessingFeedback()
            context = dataobjects.createContext(feedback)
            results[i] = _run(dict(job, OUTPUT=str(tmp_path / f"par{i}.tif")), feedback, context)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2
    for i, (want, want_gt, want_nd) in enumerate(sequential):
        got, gt, nd = read(tmp_path / f"par{i}.tif")
        assert (gt, nd) == (want_gt, want_nd)
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(sequential[0][0], sequential[1][0])


def test_output_layer_is_named_after_the_method_when_loaded(qgis_app, uint_tiles, tmp_path):
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import QgsProcessing, QgsProcessingFeedback, QgsProcessingOutputLayerDefinition, QgsProject
    project = QgsProject()
    feedback = QgsProcessingFeedback()
    context = dataobjects.createContext(feedback)
    context.setProject(project)
    import processing
    alg = qgis_app.processingRegistry().createAlgorithmById(ALG)
    params = {"INPUT": uint_tiles, "METHOD": 3, "CHUNK_SIZE": CHUNK,
              "OUTPUT": QgsProcessingOutputLayerDefinition(QgsProcessing.TEMPORARY_OUTPUT, project)}
    result = processing.run(alg, params, context=context, feedback=feedback,
                            onFinish=lambda *args: None)
    out = result["OUTPUT"]
    assert os.path.isfile(out) and out.endswith(".tif")
    assert context.willLoadLayerOnCompletion(out)
    assert context.layerToLoadOnCompletionDetails(out).name == "Mosaic (max)"
    assert handleAlgorithmResults(alg, context, feedback, parameters=params)
    layers = list(project.mapLayers().values())
    assert [layer.name() for layer in layers] == ["Mosaic (max)"]
    assert layers[0].isValid() and layers[0].source() == out
    assert (layers[0].width(), layers[0].height()) == (540, 270)


def test_missing_input_is_named_even_without_qgis_parameter_check(qgis_app, tmp_path):
    """The batch dialog and alg.run() skip checkParameterValues: the tile must not be dropped."""
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback
    paths = tile_set(tmp_path, seed=4, grid=(1, 2), size=(60, 50), overlap=10)
    missing = str(tmp_path / "missing_tile.tif")
    alg = qgis_app.processingRegistry().createAlgorithmById(ALG)
    out = str(tmp_path / "out.tif")
    with pytest.raises(QgsProcessingException, match="missing_tile.tif"):
        alg.run({"INPUT": paths + [missing], "OUTPUT": out}, QgsProcessingContext(),
                QgsProcessingFeedback(), {}, False)
    assert not os.path.exists(out)


def test_paths_starting_with_a_tilde_are_in_the_home_folder(qgis_app, uint_tiles, tmp_path,
                                                            monkeypatch):
    """``~/...`` (as qgis_process receives ``OUTPUT=~/m.tif``, unexpanded by the shell):
    the inputs are read, the output written and loaded from the home folder."""
    import shutil

    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import (
        QgsProcessingFeedback,
        QgsProcessingOutputLayerDefinition,
        QgsProject,
    )
    home = tmp_path / "home"
    (home / "mosaics" / "tiles").mkdir(parents=True)
    for path in uint_tiles:
        shutil.copy(path, home / "mosaics" / "tiles")
    monkeypatch.setenv("HOME", str(home))
    project = QgsProject()
    feedback = QgsProcessingFeedback()
    context = dataobjects.createContext(feedback)
    context.setProject(project)
    import processing
    alg = qgis_app.processingRegistry().createAlgorithmById(ALG)
    inputs = [f"~/mosaics/tiles/{os.path.basename(p)}" for p in uint_tiles]
    params = {"INPUT": inputs, "CHUNK_SIZE": CHUNK,
              "OUTPUT": QgsProcessingOutputLayerDefinition("~/mosaics/demo_mosaic.tif", project)}
    result = processing.run(alg, params, context=context, feedback=feedback,
                            onFinish=lambda *args: None)
    out = str(home / "mosaics" / "demo_mosaic.tif")
    assert result["OUTPUT"] == out
    assert list(context.layersToLoadOnCompletion()) == [out]
    assert handleAlgorithmResults(alg, context, feedback, parameters=params)
    assert [layer.source() for layer in project.mapLayers().values()] == [out]
    got, gt, nodata = read(out)
    want, want_gt, want_nodata = read(vrt_reference(uint_tiles, tmp_path / "ref.tif"))
    assert (gt, nodata) == (want_gt, want_nodata)
    np.testing.assert_array_equal(got, want)
    assert not os.path.exists("~")


def test_urls_and_a_list_file_typed_in_input_are_read(qgis_app, uint_tiles, nginx, tmp_path):
    """INPUT items typed or pasted: an http:// URL (nginx on 127.0.0.1) and ``@list.txt``
    naming another URL and local files give GDAL's mosaic of the local files; a missing
    object is one QgsProcessingException naming it."""
    import shutil

    from qgis.core import QgsProcessingException
    for path in uint_tiles[:2]:
        shutil.copy(path, os.path.join(nginx.data, os.path.basename(path)))
    urls = [nginx.url(os.path.basename(p)) for p in uint_tiles[:2]]
    listing = tmp_path / "inputs.txt"
    listing.write_text("# the rest\n" + "\n".join([urls[1]] + list(uint_tiles[2:])) + "\n")
    out = str(tmp_path / "m.tif")
    _run({"INPUT": [urls[0], f"@{listing}"], "OUTPUT": out})
    got, gt, _ = read(out)
    ref, ref_gt, _ = read(vrt_reference(uint_tiles, tmp_path / "ref.tif"))
    assert gt == ref_gt
    np.testing.assert_array_equal(got, ref)
    missing = str(tmp_path / "never.tif")
    with pytest.raises(QgsProcessingException, match="missing.tif: does not exist"):
        _run({"INPUT": [nginx.url("missing.tif")] + list(uint_tiles), "OUTPUT": missing})
    assert not os.path.exists(missing)
