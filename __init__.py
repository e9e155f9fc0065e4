"""Streaming Mosaic: a QGIS Processing plugin, a CLI and a Python API that mosaic rasters
window by window within a memory budget.

QGIS calls :func:`classFactory`; the plugin module (and qgis) is imported only
then. The Python API (:func:`mosaic`, :func:`plan`, the typed errors, the rules
table) is loaded on first use, so neither QGIS nor the plugin's start-up pays for it:

>>> import streaming_mosaic
>>> result = streaming_mosaic.mosaic(["a.tif", "b.tif"], "out.tif", method="max")
"""

_API = {
    "mosaic": "api", "plan": "api", "options": "api",
    "MosaicError": "errors", "OptionError": "errors", "InputError": "errors",
    "OutputError": "errors", "ResumeError": "errors", "Cancelled": "errors",
    "GdalFailure": "errors",
    "RULES": "composite", "Rule": "composite", "pairwise_rule": "composite",
    "Options": "options", "PARAMS": "options",
    "Result": "engine", "Progress": "progress",
}

__all__ = sorted(_API) + ["classFactory"]


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"{__name__}.core.{module}"), name)


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS entry point: return the plugin object."""
    from .plugin import StreamingMosaicPlugin
    return StreamingMosaicPlugin(iface)
