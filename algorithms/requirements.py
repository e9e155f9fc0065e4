"""What the algorithms need from the QGIS installation (checked by canExecute)."""

MIN_GDAL = (3, 1)  # COG driver; ReadAsArray(buf_obj=..., band_list=...)


def missing_requirements():
    """A message saying what is missing, or an empty string when all is there."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy is not available in this QGIS Python; install it (it ships with QGIS)."
    try:
        from osgeo import gdal
    except ImportError:
        return "GDAL's Python bindings (osgeo.gdal) are not available in this QGIS."
    version = tuple(int(v) for v in gdal.__version__.split(".")[:2])
    if version < MIN_GDAL:
        return (f"GDAL {gdal.__version__} is too old: Streaming Mosaic needs GDAL "
                f"{MIN_GDAL[0]}.{MIN_GDAL[1]} or newer (QGIS 3.22+ bundles it).")
    if gdal.GetDriverByName("GTiff") is None:
        return "GDAL's GeoTIFF driver is missing from this QGIS."
    return ""
