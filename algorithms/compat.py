"""Enum spellings that differ between QGIS 3.22 and QGIS 3.36+ / 4.x (Qt6).

QGIS 3.36 moved Processing enums into ``Qgis`` and QGIS 4 drops the old
spellings; QGIS 3.22 only has the old ones. Everything version-dependent is
resolved here once.
"""

from qgis.core import (
    Qgis,
    QgsFeatureSink,
    QgsField,
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)


def _pick(new_owner, new_name, old_owner, old_name):
    owner = getattr(Qgis, new_owner, None) if isinstance(new_owner, str) else new_owner
    value = getattr(owner, new_name, None) if owner is not None else None
    return value if value is not None else getattr(old_owner, old_name)


RASTER = _pick("ProcessingSourceType", "Raster", QgsProcessing, "TypeRaster")
VECTOR_POLYGON = _pick("ProcessingSourceType", "VectorPolygon", QgsProcessing, "TypeVectorPolygon")
ADVANCED = _pick("ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition,
                 "FlagAdvanced")
DOUBLE = _pick("ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Double")
INTEGER = _pick("ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber, "Integer")
POLYGON = _pick("WkbType", "Polygon", QgsWkbTypes, "Polygon")
FAST_INSERT = _pick(getattr(QgsFeatureSink, "Flag", None), "FastInsert", QgsFeatureSink, "FastInsert")


def field(name, kind):
    """A QgsField of kind 'string', 'double', 'int' or 'bool' on any QGIS version."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        from qgis.PyQt.QtCore import QMetaType
        types = {"string": QMetaType.Type.QString, "double": QMetaType.Type.Double,
                 "int": QMetaType.Type.Int, "bool": QMetaType.Type.Bool}
    else:
        from qgis.PyQt.QtCore import QVariant
        types = {"string": QVariant.String, "double": QVariant.Double, "int": QVariant.Int,
                 "bool": QVariant.Bool}
    return QgsField(name, types[kind])


def crs_text(crs):
    """A QgsCoordinateReferenceSystem as text GDAL understands (authid or WKT)."""
    if crs is None or not crs.isValid():
        return None
    authid = crs.authid()
    if authid.upper().startswith("EPSG:"):
        return authid
    variant = getattr(getattr(Qgis, "CrsWktVariant", None), "PreferredGdal", None)
    if variant is None:
        variant = type(crs).WKT_PREFERRED_GDAL
    return crs.toWkt(variant)
