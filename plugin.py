"""The QGIS plugin object: registers the Processing provider (no GUI of its own)."""

from qgis.core import QgsApplication

from .algorithms.provider import StreamingMosaicProvider


class StreamingMosaicPlugin:
    """Created by :func:`classFactory`; QGIS and qgis_process call initProcessing."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS's name)
        if self.provider is None:
            self.provider = StreamingMosaicProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
