"""The ``streamingmosaic`` Processing provider."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core import __version__
from .base import ICON
from .mosaic import MosaicAlgorithm
from .plan import PlanAlgorithm


class StreamingMosaicProvider(QgsProcessingProvider):
    """Registers the mosaic and plan algorithms."""

    def id(self):
        return "streamingmosaic"

    def name(self):
        return "Streaming Mosaic"

    def longName(self):
        return f"Streaming Mosaic {__version__}"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def versionInfo(self):
        return __version__

    def loadAlgorithms(self):
        self.addAlgorithm(MosaicAlgorithm())
        self.addAlgorithm(PlanAlgorithm())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif", "tiff"]

    def defaultRasterFileExtension(self):
        return "tif"
