"""QGIS parameters generated from the core's single parameter table, and read back.

:func:`add_parameters` declares the QgsProcessingParameter objects of
:data:`~streaming_mosaic.core.options.PARAMS`; :func:`read_options` turns an
algorithm's parameter values into the core's Options. Neither repeats a name,
default or help text: they all come from the table.
"""

import os

from qgis.core import (
    QgsMapLayer,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.errors import MosaicError
from ..core.options import PARAMS, Options, enum_name
from ..core.sources import describe_all
from ..core.storage import expand_inputs
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


def expand_home(path):
    """A file name with a leading ``~`` expanded, as a shell would.

    qgis_process's ``OUTPUT=~/mosaic.tif`` reaches the algorithm unexpanded (a shell
    expands ``~`` only at the start of a word), and QGIS passes it on as it is.
    """
    return os.path.expanduser(path) if isinstance(path, str) and path.startswith("~") else path


def _is_set(parameters, name):
    value = parameters.get(name)
    return value is not None and value != ""


def _input_items(parameters):
    value = parameters.get("INPUT")
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layer_path(layer):
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        raise QgsProcessingException(tr("INPUT: layer '{}' is not a GDAL raster file; save it "
                                        "as a GeoTIFF first").format(layer.name()))
    source = layer.source()
    return source.split("|")[0] if os.path.exists(source.split("|")[0]) else source


def input_paths(algorithm, parameters, context):
    """File names of the INPUT rasters, without loading files as QGIS layers.

    Layers already in the project (or given as layer objects) give their source;
    any other string is a file name handed to the core as is. Loading files as
    layers would make QGIS compute statistics for a default style (slow with
    thousands of inputs) and write ``.aux.xml`` files next to the inputs.
    """
    paths = []
    for item in _input_items(parameters):
        if isinstance(item, QgsMapLayer):
            paths.append(_layer_path(item))
        elif isinstance(item, str):
            layer = QgsProcessingUtils.mapLayerFromString(item, context, False)
            paths.append(_layer_path(layer) if layer is not None else expand_home(item))
        else:  # expressions and other values QGIS knows how to evaluate
            paths.extend(_layer_path(layer) for layer in
                         algorithm.parameterAsLayerList({"INPUT": item}, "INPUT", context))
    return paths


def input_problem(parameters, context):
    """A message naming the first INPUT file that is not a readable raster, or ''.

    QGIS's own check only says "Incorrect parameter value for INPUT"; this names the file.
    """
    items = _input_items(parameters)
    if not items:
        return tr("INPUT: no input rasters given")
    try:
        paths = []
        for item in items:
            if not isinstance(item, str) or not item:
                continue
            if QgsProcessingUtils.mapLayerFromString(item, context, False) is not None:
                continue
            # A URL, s3:// path or @list.txt (typed or pasted) is what the core reads.
            paths.extend(expand_inputs([expand_home(item.split("|")[0])]))
        # As the plan describes them: look-alike tiles cost one GDAL description.
        describe_all(paths)
    except MosaicError as exc:
        return "INPUT: {}".format(exc)
    return ""


def check_parameters(algorithm, parameters, context):
    """QGIS's parameter check, except that INPUT files are not loaded as layers.

    QgsProcessingAlgorithm.checkParameterValues loads every file of a multiple
    layer parameter into the project's temporary store (statistics, .aux.xml
    files next to the inputs); INPUT is checked by opening the files read-only.
    """
    for definition in algorithm.parameterDefinitions():
        if definition.name() == "INPUT":
            continue
        if not definition.checkValueIsAcceptable(parameters.get(definition.name()), context):
            return False, tr("Incorrect parameter value for {}").format(definition.name())
    problem = input_problem(parameters, context)
    return (not problem, problem)


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
            value = enum_name(p.attr, algorithm.parameterAsEnum(parameters, name, context))
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
            value = expand_home(algorithm.parameterAsOutputLayer(parameters, name, context))
        values[p.attr] = value
    return Options(extent_crs=extent_crs, **values)
