"""``streamingmosaic:mosaic``: the Processing algorithm, thin glue over the core engine."""

import os

from qgis.core import QgsApplication, QgsProcessingException

from ..core.engine import run
from ..core.errors import MosaicError
from .base import StreamingMosaicAlgorithm
from .help import help_url, short_help
from .parameters import add_parameters, expand_home, read_options, tr

# The dialog's log gets a "window i/n" line for every window of runs up to this many
# windows; longer runs log every k-th window (and the first and last) instead.
MAX_WINDOW_LINES = 200


def in_qgis_process():
    """True inside the standalone ``qgis_process`` tool (not the QGIS desktop or a script).

    qgis_process prints every progress text as a line of its own, which breaks its
    ``0...10...100`` bar into one line per window; the desktop dialog logs them.
    qgis_process names its application's platform "qgis_process" (the desktop, and
    standalone scripts by default, "desktop").
    """
    return QgsApplication.platform() == "qgis_process"


def _worth_logging(event):
    if event.phase != "windows":
        return True
    step = -(-event.total // MAX_WINDOW_LINES)
    return event.done in (1, event.total) or event.done % step == 0


def _load_expanded(context, output):
    """Load the output from its expanded name when OUTPUT was given as ``~/...``.

    QGIS registered the name as given for loading when the run completes, and would
    not find a file named ``~/...``.
    """
    layers = context.layersToLoadOnCompletion()
    given = [name for name in layers if name.startswith("~")
             and os.path.abspath(expand_home(name)) == output]
    for name in given:
        layers[output] = layers.pop(name)
    if given:
        context.setLayersToLoadOnCompletion(layers)


class MosaicAlgorithm(StreamingMosaicAlgorithm):
    """Mosaic rasters window by window into a tiled, compressed GeoTIFF or COG."""

    OUTPUT = "OUTPUT"

    def name(self):
        return "mosaic"

    def displayName(self):
        return tr("Mosaic rasters (streaming)")

    def tags(self):
        return [tr(t) for t in ("mosaic", "merge", "stitch", "vrt", "cog", "composite",
                                "feather", "reproject", "large", "tiles")]

    def shortHelpString(self):
        return short_help(
            "Mosaics any number of rasters into one GeoTIFF or Cloud Optimized GeoTIFF, "
            "window by window, within the memory budget you set, whatever the size of the "
            "inputs. Inputs in other CRS are reprojected on the fly; overlaps combine by the "
            "rule you choose. Run <i>Plan mosaic (dry run)</i> first to check a long job.")

    def helpUrl(self):
        return help_url("mosaic-rasters-streaming")

    def initAlgorithm(self, config=None):
        add_parameters(self)

    def processAlgorithm(self, parameters, context, feedback):
        options = read_options(self, parameters, context)

        last_text = [None]
        bar_only = in_qgis_process()

        def progress(event):
            feedback.setProgress(100.0 * event.fraction)
            if bar_only or event.text == last_text[0] or not _worth_logging(event):
                return  # the dialog appends every progress text to its log
            last_text[0] = event.text
            feedback.setProgressText(event.text)

        def log(message, level="info"):
            if level == "warning":
                feedback.pushWarning(message)
            else:
                feedback.pushInfo(message)

        try:
            result = run(options, progress=progress, cancel=feedback.isCanceled, log=log)
        except MosaicError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(tr("Finished: {}").format(result.summary()))
        output = result.output
        _load_expanded(context, output)
        if context.willLoadLayerOnCompletion(output):
            details = context.layerToLoadOnCompletionDetails(output)
            details.name = tr("Mosaic ({})").format(options.method)
        return {self.OUTPUT: output}
