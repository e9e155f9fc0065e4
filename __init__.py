"""Streaming Mosaic: a QGIS Processing plugin and CLI that mosaics rasters window by window.

QGIS calls :func:`classFactory`; the plugin module (and qgis) is imported only
then, so ``import streaming_mosaic.core`` and the CLI work without QGIS.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS entry point: return the plugin object."""
    from .plugin import StreamingMosaicPlugin
    return StreamingMosaicPlugin(iface)
