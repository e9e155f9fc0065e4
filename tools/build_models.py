"""Build the example graphical model(s) in resources/models/ with QGIS's own model API.

    /usr/bin/python3 tools/build_models.py [--out resources/models]

The .model3 files are written by QgsProcessingModelAlgorithm.toFile, so they are
real QGIS output that the Model Designer opens and edits. The plugin's provider
must be registered while building (the child algorithm ids are checked), so the
script starts a headless QGIS with the checkout on QGIS_PLUGINPATH.
"""

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"


def mosaic_then_hillshade():
    """A model: input rasters -> streamingmosaic:mosaic -> native:hillshade -> Hillshade."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Source
    from qgis.PyQt.QtCore import QPointF

    from streaming_mosaic.algorithms.compat import RASTER

    model = QgsProcessingModelAlgorithm("Mosaic then hillshade", "Streaming Mosaic examples",
                                        "streamingmosaicexamples")
    model.setHelpContent({
        "ALG_DESC": "Mosaics elevation tiles with Streaming Mosaic (later tiles on top), "
                    "then computes a hillshade of the mosaic with QGIS's native algorithm.",
        "rasters": "Elevation tiles to mosaic, in stacking order.",
        "hillshade:Hillshade": "The hillshade of the mosaic.",
        "ALG_CREATOR": "Streaming Mosaic developers",
    })

    rasters = QgsProcessingParameterMultipleLayers("rasters", "Elevation tiles", RASTER)
    component = QgsProcessingModelParameter("rasters")
    component.setPosition(QPointF(120, 60))
    model.addModelParameter(rasters, component)

    mosaic = QgsProcessingModelChildAlgorithm("streamingmosaic:mosaic")
    mosaic.setChildId("mosaic")
    mosaic.setDescription("Mosaic rasters (streaming)")
    mosaic.setPosition(QPointF(320, 160))
    mosaic.addParameterSources("INPUT", [Source.fromModelParameter("rasters")])
    for name, value in (("METHOD", 0), ("COMPRESSION", 0), ("MEMORY_MB", 256)):
        mosaic.addParameterSources(name, [Source.fromStaticValue(value)])
    model.addChildAlgorithm(mosaic)

    hillshade = QgsProcessingModelChildAlgorithm("native:hillshade")
    hillshade.setChildId("hillshade")
    hillshade.setDescription("Hillshade")
    hillshade.setPosition(QPointF(520, 260))
    hillshade.addParameterSources("INPUT", [Source.fromChildOutput("mosaic", "OUTPUT")])
    for name, value in (("Z_FACTOR", 1.0), ("AZIMUTH", 300.0), ("V_ANGLE", 40.0)):
        hillshade.addParameterSources(name, [Source.fromStaticValue(value)])
    output = QgsProcessingModelOutput("Hillshade", "Hillshade")
    output.setChildId("hillshade")
    output.setChildOutputName("OUTPUT")
    output.setPosition(QPointF(720, 320))
    hillshade.setModelOutputs({"Hillshade": output})
    model.addChildAlgorithm(hillshade)
    model.updateDestinationParameters()
    return model


MODELS = {"mosaic_then_hillshade.model3": mosaic_then_hillshade}


def start_qgis():
    """A headless QGIS with this checkout's provider registered (throwaway profile).

    Returns (app, sandbox folder to delete at the end).
    """
    sandbox = tempfile.mkdtemp(prefix="sm-models-")
    link_parent = os.path.join(sandbox, "plugins")
    os.makedirs(link_parent)
    os.symlink(ROOT, os.path.join(link_parent, "streaming_mosaic"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["QGIS_CUSTOM_CONFIG_PATH"] = os.path.join(sandbox, "config")
    os.environ["QGIS_PLUGINPATH"] = link_parent
    sys.path.insert(0, link_parent)
    if QGIS_PLUGINS not in sys.path:
        sys.path.append(QGIS_PLUGINS)
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing
    Processing.initialize()
    import qgis.utils
    if not (qgis.utils.loadPlugin("streaming_mosaic")
            and qgis.utils.startProcessingPlugin("streaming_mosaic")):
        raise SystemExit("the streaming_mosaic provider did not load")
    return app, sandbox


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "resources", "models"))
    args = parser.parse_args(argv)
    app, sandbox = start_qgis()  # noqa: F841 (QGIS stops when app is collected)
    status = 0
    try:
        os.makedirs(args.out, exist_ok=True)
        for name, build in MODELS.items():
            path = os.path.join(args.out, name)
            if not build().toFile(path):
                print(f"could not write {path}", file=sys.stderr)
                status = 1
                break
            print(path)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)  # QGIS may crash while tearing down


if __name__ == "__main__":
    main()
