"""Processing dialogs and batch serialisation: every parameter round-trips through the Python
strings the batch dialog and model exports write, and the algorithm and batch dialogs open
offscreen with a widget for every parameter and run what they hold."""

import inspect
import os

import numpy as np
import pytest

from helpers import read

# QT_QPA_PLATFORM=offscreen is set by tests/qgis/conftest.py; the session's
# QgsApplication([], False) is still a QApplication under Qt 5, so widgets work in-process.


TILES = dict(seed=51, grid=(1, 2), size=(120, 90), overlap=20, bands=2, dtype="uint16")


def _alg(registry, name):
    alg = registry.createAlgorithmById(f"streamingmosaic:{name}")
    assert alg is not None
    return alg


def _namespace():
    """The names the batch dialog evaluates saved values in (BatchPanel.load uses eval)."""
    import processing.gui.BatchPanel as batch_panel
    return dict(vars(batch_panel))


def _optional_flag():
    """The "optional" parameter flag: Qgis.ProcessingParameterFlag on QGIS >= 3.36 / 4."""
    from qgis.core import Qgis, QgsProcessingParameterDefinition
    flags = getattr(Qgis, "ProcessingParameterFlag", None)
    return flags.Optional if flags is not None else QgsProcessingParameterDefinition.FlagOptional


def typical_values(tiles, folder):
    """Typical values of every mosaic parameter, as a user or script passes them."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle
    return {
        "INPUT": [tiles, tiles[::-1]],
        "METHOD": [0, 3, 7],
        "PERCENTILE": [50.0, 12.5],
        "ORDER": [0, 2],
        "ADD_ALPHA": [False, True],
        "HARMONIZE": [0, 2],
        "DASK_SCHEDULER": [None, "local:2", "tcp://127.0.0.1:8786"],
        "WORK_FOLDER": [None, str(folder)],
        "FEATHER_DISTANCE": [32.0, 4.5],
        "NODATA_INPUT": [None, -9999.0, 0.0],
        "NODATA_OUTPUT": [None, 65535.0],
        "TARGET_CRS": [None, "EPSG:32633", QgsCoordinateReferenceSystem("EPSG:4326")],
        "RESAMPLING": [0, 1, 11],
        "RESOLUTION": [0, 2],
        "PIXEL_SIZE": [None, 20.0, 0.5],
        "TARGET_ALIGNED_PIXELS": [False, True],
        "EXTENT": [None, QgsRectangle(500100.0, 4999200.0, 501000.0, 4999900.0),
                   "500100.0,501000.0,4999200.0,4999900.0 [EPSG:32633]"],
        "BANDS": [None, "2,1", "1"],
        "DATA_TYPE": [0, 6],
        "COMPRESSION": [0, 2, 3],
        "CREATION_OPTIONS": [None, "BLOCKXSIZE=128|BLOCKYSIZE=128"],
        "COG": [False, True],
        "OVERVIEWS": [False, True],
        "CHUNK_SIZE": [0, 256],
        "MEMORY_MB": [256, 64],
        "THREADS": [0, 2],
        "RESUME": [False, True],
        "OUTPUT": [os.path.join(str(folder), "out.tif")],
    }


def test_values_round_trip_through_value_as_python_string(registry, tiles, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingContext, QgsRectangle
    alg = _alg(registry, "mosaic")
    context = QgsProcessingContext()
    ns = _namespace()
    values = typical_values(tiles, tmp_path)
    assert sorted(values) == sorted(d.name() for d in alg.parameterDefinitions())
    for definition in alg.parameterDefinitions():
        for value in values[definition.name()]:
            text = definition.valueAsPythonString(value, context)
            back = eval(text, ns)  # noqa: S307 (as the batch dialog's load)
            where = (definition.name(), value, text)
            assert definition.checkValueIsAcceptable(back, context), where
            assert definition.valueAsPythonString(back, context) == text, where
            if isinstance(value, QgsCoordinateReferenceSystem):
                assert back.authid() == value.authid(), where
            elif isinstance(value, QgsRectangle):
                extent = alg.parameterAsExtent({"EXTENT": back}, "EXTENT", context)
                assert extent == value, where
            else:
                assert back == value, where


def test_definitions_round_trip_through_python_and_variant_maps(registry):
    import qgis.core
    from qgis.core import QgsProcessingParameters
    ns = dict(vars(qgis.core))  # what a script exported from a model imports
    for name in ("mosaic", "plan"):
        alg = _alg(registry, name)
        for definition in alg.parameterDefinitions():
            code = definition.asPythonString()
            again = eval(code, ns)  # noqa: S307 (as the model's "export as script")
            assert type(again) is type(definition), code
            assert (again.name(), again.description()) == (definition.name(),
                                                           definition.description())
            assert again.defaultValue() == definition.defaultValue(), code
            optional = _optional_flag()
            assert bool(again.flags() & optional) == bool(definition.flags() & optional), code
            if hasattr(definition, "options"):
                assert again.options() == definition.options()
            if hasattr(definition, "minimum"):
                # QGIS prints numbers with 6 significant digits (1048576 -> 1.04858e+06).
                assert again.minimum() == pytest.approx(definition.minimum(), rel=1e-5)
                assert again.maximum() == pytest.approx(definition.maximum(), rel=1e-5)
                assert again.dataType() == definition.dataType()
            # Models store definitions as variant maps: that round trip is exact.
            variant = definition.toVariantMap()
            restored = QgsProcessingParameters.parameterFromVariantMap(variant)
            assert restored.toVariantMap() == variant, definition.name()


def test_check_parameter_values_accepts_a_full_map(registry, tiles, tmp_path):
    from qgis.core import QgsProcessingContext
    context = QgsProcessingContext()
    values = typical_values(tiles, tmp_path)
    full = {name: options[-1] for name, options in values.items()}
    mosaic = _alg(registry, "mosaic")
    assert mosaic.checkParameterValues(full, context) == (True, "")
    plan_values = {k: v for k, v in full.items() if k not in ("OUTPUT", "RESUME")}
    plan_values["REPORT"] = str(tmp_path / "plan.html")
    ok, message = _alg(registry, "plan").checkParameterValues(plan_values, context)
    assert ok, message
    for bad in ({"INPUT": None}, {"METHOD": 99}, {"MEMORY_MB": 1}):
        ok, message = mosaic.checkParameterValues(dict(full, **bad), context)
        assert not ok and list(bad)[0] in message, (bad, message)


def _run(params):
    import processing
    return processing.run("streamingmosaic:mosaic", params)


@pytest.mark.parametrize("name", ["mosaic", "plan"])
def test_algorithm_dialog_has_a_widget_for_every_parameter(qgis_app, registry, name):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    alg = _alg(registry, name)
    dialog = AlgorithmDialog(alg)
    try:
        dialog.show()
        panel = dialog.mainWidget()
        names = [d.name() for d in alg.parameterDefinitions()]
        assert sorted(panel.wrappers) == sorted(names)
        for param_name, wrapper in panel.wrappers.items():
            widget = wrapper.wrappedWidget() if hasattr(wrapper, "wrappedWidget") else wrapper.widget
            assert widget is not None, param_name
        assert dialog.windowTitle()
    finally:
        dialog.close()
        dialog.deleteLater()


def test_algorithm_dialog_runs_the_values_it_holds(qgis_app, registry, tiles, tmp_path):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    dialog = AlgorithmDialog(_alg(registry, "mosaic"))
    try:
        out = str(tmp_path / "dialog.tif")
        chosen = {"INPUT": tiles, "METHOD": 2, "BANDS": "2", "COMPRESSION": 1, "CHUNK_SIZE": 256,
                  "OUTPUT": out}
        dialog.setParameters(chosen)
        params = dialog.createProcessingParameters()
    finally:
        dialog.close()
        dialog.deleteLater()
    assert params["INPUT"] == tiles
    assert (params["METHOD"], params["BANDS"], params["COMPRESSION"]) == (2, "2", 1)
    assert params["OUTPUT"].sink.staticValue() == out
    _run(params)
    direct = str(tmp_path / "direct.tif")
    _run(dict(chosen, OUTPUT=direct))
    got, want = read(out), read(direct)
    assert got[0].shape[0] == 1 and got[1:] == want[1:]
    np.testing.assert_array_equal(got[0], want[0])


def test_batch_dialog_opens_and_runs_its_rows(qgis_app, registry, tiles, tmp_path):
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects
    alg = _alg(registry, "mosaic")
    dialog = BatchAlgorithmDialog(alg.create())
    try:
        dialog.show()
        panel = dialog.mainWidget()
        inputs = [d for d in alg.parameterDefinitions() if not d.isDestination()]
        assert len(panel.wrappers) == 1  # one empty row to begin
        for definition in inputs:
            column = panel.parameter_to_column[definition.name()]
            assert panel.wrappers[0][column] is not None, definition.name()
        out_column = panel.parameter_to_column["OUTPUT"]
        assert panel.tblParameters.cellWidget(1, out_column) is not None

        panel.addRow()
        context = dataobjects.createContext()
        outs = [str(tmp_path / "batch0.tif"), str(tmp_path / "batch1.tif")]
        for row, (method, out) in enumerate(zip((0, 3), outs)):
            for name, value in (("INPUT", tiles), ("METHOD", method), ("CHUNK_SIZE", 256)):
                panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value,
                                                                                     context)
            panel.tblParameters.cellWidget(row + 1, out_column).setValue(out)
        rows = []
        for row in range(panel.batchRowCount()):
            if "context" in inspect.signature(panel.parametersForRow).parameters:
                params, ok = panel.parametersForRow(row, context)  # QGIS >= 3.24
            else:
                params, ok = panel.parametersForRow(row)
            assert ok
            rows.append(params)
        # What "Save" writes (valueAsPythonString) evaluates back to the same values.
        ns = _namespace()
        for params in rows:
            for definition in inputs:
                text = definition.valueAsPythonString(params[definition.name()], context)
                assert eval(text, ns) == params[definition.name()], text  # noqa: S307
    finally:
        dialog.close()
        dialog.deleteLater()
    for params, out, method in zip(rows, outs, (0, 3)):
        assert params["METHOD"] == method
        _run(params)
        direct = str(tmp_path / f"direct{method}.tif")
        _run({"INPUT": tiles, "METHOD": method, "CHUNK_SIZE": 256, "OUTPUT": direct})
        np.testing.assert_array_equal(read(out)[0], read(direct)[0])
