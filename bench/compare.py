"""Pixel-by-pixel comparison of two rasters, strip by strip (bounded memory)."""

import numpy as np
from osgeo import gdal


def compare(path, ref, strip=512):
    """Compare ``path`` with ``ref``.

    Returns
    -------
    dict
        identical (bool), reason (str, when the grids differ), diff_samples,
        diff_pixels (pixels where any band differs), pixels, max_abs.
    """
    a, b = gdal.Open(str(path)), gdal.Open(str(ref))
    if a is None or b is None:
        return {"identical": False, "reason": "cannot open"}
    shape_a = (a.RasterCount, a.RasterYSize, a.RasterXSize)
    shape_b = (b.RasterCount, b.RasterYSize, b.RasterXSize)
    if shape_a != shape_b:
        return {"identical": False, "reason": f"shape {shape_a} != {shape_b}"}
    gta, gtb = a.GetGeoTransform(), b.GetGeoTransform()
    if any(abs(x - y) > 1e-6 * max(1.0, abs(y)) for x, y in zip(gta, gtb)):
        return {"identical": False, "reason": f"geotransform {gta} != {gtb}"}
    nda = [a.GetRasterBand(i + 1).GetNoDataValue() for i in range(a.RasterCount)]
    ndb = [b.GetRasterBand(i + 1).GetNoDataValue() for i in range(b.RasterCount)]
    dta = a.GetRasterBand(1).DataType
    dtb = b.GetRasterBand(1).DataType
    if dta != dtb:
        return {"identical": False, "reason": "data type differs"}
    nd = ndb[0]
    diff_samples = diff_pixels = nodata_pixels = 0
    max_abs = 0.0
    bands, height, width = shape_a
    for y in range(0, height, strip):
        h = min(strip, height - y)
        xa = a.ReadAsArray(0, y, width, h).reshape(bands, h, width)
        xb = b.ReadAsArray(0, y, width, h).reshape(bands, h, width)
        ne = xa != xb
        if ne.any():
            diff_samples += int(ne.sum())
            diff_pixels += int(ne.any(axis=0).sum())
            if nd is not None:
                one_side = (xa == nd) != (xb == nd)
                nodata_pixels += int(one_side.any(axis=0).sum())
            d = np.abs(xa[ne].astype(np.float64) - xb[ne].astype(np.float64))
            max_abs = max(max_abs, float(d.max()))
    out = {"identical": diff_samples == 0 and nda == ndb, "diff_samples": diff_samples,
           "diff_pixels": diff_pixels, "pixels": width * height, "max_abs": max_abs,
           "nodata_pixels": nodata_pixels}
    if nda != ndb:
        out["reason"] = f"nodata {nda} != {ndb}"
    return out


def describe(result):
    """A short text for tables."""
    if result is None:
        return ""
    if result.get("identical"):
        return "identical"
    if "diff_pixels" not in result:
        return result.get("reason", "differs")
    text = (f"{result['diff_pixels']:,} px differ ({100 * result['diff_pixels'] / result['pixels']:.3g}%, "
            f"max |d| {result['max_abs']:g})")
    if result.get("nodata_pixels"):
        text += f", {result['nodata_pixels']:,} of them nodata on one side only"
    if result.get("reason"):
        text += f"; {result['reason']}"
    return text
