"""QGIS parameters generated from the core's single parameter table, and read back.

:func:`add_parameters` declares the QgsProcessingParameter objects of
:data:`~streaming_mosaic.core.options.PARAMS`; :func:`read_options` turns an
algorithm's parameter values into the core's Options. Neither repeats a name,
default or help text: they all come from the table.
"""

import os

from qgis.core import (QgsProcessingException, QgsProcessingParameterBoolean,
                       QgsProcessingParameterCrs, QgsProcessingParameterEnum,
                       QgsProcessingParameterExtent, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterString, QgsProcessingUtils, QgsRasterLayer)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.errors import MosaicError
from ..core.options import PARAMS, Options
from ..core.sources import describe as describe_source
from .compat import ADVANCED, DOUBLE, INTEGER, RASTER, crs_text


def tr(text):
    return QCoreApplication.translate("StreamingMosaic", text)


def _definition(p):
    label = tr(p.label)
    if p.kind == "inputs":
        return QgsProcessingParameterMultipleLayers(p.name, label, RASTER)
    if p.kind == "enum":
        return QgsProcessingParameterEnum(p.name, label, options=[tr(c[1]) for c in p.choices],
                                          defaultValue=p.default)
    if p.kind in ("float", "int"):
        d = QgsProcessingParameterNumber(p.name, label, DOUBLE if p.kind == "float" else INTEGER,
                                         defaultValue=p.default, optional=p.optional)
        if p.minimum is not None:
            d.setMinimum(p.minimum)
        if p.maximum is not None:
            d.setMaximum(p.maximum)
        return d
    if p.kind == "bool":
        return QgsProcessingParameterBoolean(p.name, label, defaultValue=p.default)
    if p.kind == "crs":
        return QgsProcessingParameterCrs(p.name, label, optional=True)
    if p.kind == "extent":
        return QgsProcessingParameterExtent(p.name, label, optional=True)
    if p.kind == "string":
        return QgsProcessingParameterString(p.name, label, optional=p.optional)
    if p.kind == "output":
        return QgsProcessingParameterRasterDestination(p.name, label)
    raise ValueError(p.kind)


def add_parameters(algorithm, plan_only=False):
    """Declare the contract's parameters on ``algorithm`` (plan: those with in_plan)."""
    for p in PARAMS:
        if plan_only and not p.in_plan:
            continue
        d = _definition(p)
        if p.advanced:
            d.setFlags(d.flags() | ADVANCED)
        if hasattr(d, "setHelp"):
            d.setHelp(tr(p.help))
        algorithm.addParameter(d)


def _is_set(parameters, name):
    value = parameters.get(name)
    return value is not None and value != ""


def input_paths(algorithm, parameters, context):
    """File names of the INPUT layers; a non-GDAL layer is an error naming it."""
    paths = []
    for layer in algorithm.parameterAsLayerList(parameters, "INPUT", context):
        if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            raise QgsProcessingException(tr("INPUT: layer '{}' is not a GDAL raster file; save it "
                                            "as a GeoTIFF first").format(layer.name()))
        source = layer.source()
        paths.append(source.split("|")[0] if os.path.exists(source.split("|")[0]) else source)
    value = parameters.get("INPUT")
    if paths and isinstance(value, (list, tuple)) and len(paths) < len(value):
        # Some entries did not load (e.g. a missing file in a batch row: QGIS does not always
        # check values first): name it rather than mosaic without it.
        problem = input_problem(parameters, context)
        if problem:
            raise QgsProcessingException(problem)
    if not paths and _is_set(parameters, "INPUT"):
        # Files the project does not hold as layers (qgis_process, models): keep the names
        # so the core reports exactly which one is missing or unreadable.
        value = parameters["INPUT"]
        paths = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return paths


def input_problem(parameters, context):
    """A message naming the first INPUT file that is not a readable raster, or ''.

    QGIS's own check only says "Incorrect parameter value for INPUT"; this names the file.
    """
    value = parameters.get("INPUT")
    for i, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
        if not isinstance(item, str) or not item:
            continue
        layer = QgsProcessingUtils.mapLayerFromString(item, context, False)
        if isinstance(layer, QgsRasterLayer):
            continue
        try:
            describe_source(i, item.split("|")[0])
        except MosaicError as exc:
            return "INPUT: {}".format(exc)
    return ""


def read_options(algorithm, parameters, context, plan_only=False):
    """The core Options for this algorithm run."""
    values = {}
    extent_crs = None
    for p in PARAMS:
        if plan_only and not p.in_plan:
            continue
        name = p.name
        if p.kind == "inputs":
            value = input_paths(algorithm, parameters, context)
        elif p.kind == "enum":
            value = algorithm.parameterAsEnum(parameters, name, context)
        elif p.kind in ("float", "int"):
            if not _is_set(parameters, name):
                value = p.default
            elif p.kind == "float":
                value = algorithm.parameterAsDouble(parameters, name, context)
            else:
                value = algorithm.parameterAsInt(parameters, name, context)
        elif p.kind == "bool":
            value = algorithm.parameterAsBoolean(parameters, name, context)
        elif p.kind == "crs":
            value = crs_text(algorithm.parameterAsCrs(parameters, name, context)) \
                if _is_set(parameters, name) else None
        elif p.kind == "extent":
            value = None
            if _is_set(parameters, name):
                rect = algorithm.parameterAsExtent(parameters, name, context)
                if not rect.isNull() and not rect.isEmpty():
                    value = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
                    extent_crs = crs_text(algorithm.parameterAsExtentCrs(parameters, name, context))
        elif p.kind == "string":
            value = algorithm.parameterAsString(parameters, name, context) or None
        elif p.kind == "output":
            value = algorithm.parameterAsOutputLayer(parameters, name, context)
        values[p.attr] = value
    return Options(extent_crs=extent_crs, **values)
