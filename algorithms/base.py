"""What the provider's algorithms share: group, icon, requirements and parameter check."""

import os

from qgis.core import QgsProcessingAlgorithm
from qgis.PyQt.QtGui import QIcon

from .parameters import check_parameters, tr
from .requirements import missing_requirements

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icon.svg")


class StreamingMosaicAlgorithm(QgsProcessingAlgorithm):
    """Base of the provider's algorithms (subclasses: name, help, parameters, process)."""

    def group(self):
        return tr("Raster mosaicking")

    def groupId(self):
        return "mosaicking"

    def icon(self):
        return QIcon(ICON)

    def createInstance(self):
        return type(self)()

    def canExecute(self):
        missing = missing_requirements()
        return (not missing, missing)

    def checkParameterValues(self, parameters, context):
        return check_parameters(self, parameters, context)
