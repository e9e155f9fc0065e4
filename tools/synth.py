"""Synthetic rasters for tests, the demo and the benchmark.

Content is terrain-like (a smooth field) plus noise, so it compresses like real
imagery: a regular pattern compresses hundreds of times and makes timings lie.
Everything is seeded; nothing is downloaded.
"""

import os

import numpy as np
from osgeo import gdal, osr

GDAL_TYPES = {
    "uint8": gdal.GDT_Byte, "int16": gdal.GDT_Int16, "uint16": gdal.GDT_UInt16,
    "int32": gdal.GDT_Int32, "uint32": gdal.GDT_UInt32, "float32": gdal.GDT_Float32,
    "float64": gdal.GDT_Float64,
}


def srs_wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def write_raster(path, array, geotransform, epsg=32633, nodata=None, options=None,
                 alpha=None):
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF.

    ``alpha``: an optional uint8 (rows, cols) array written as an extra alpha band.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    bands, rows, cols = array.shape
    count = bands + (1 if alpha is not None else 0)
    opts = list(options or ["TILED=YES", "COMPRESS=LZW"])
    if alpha is not None:
        opts.append("ALPHA=YES")
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, count,
                                              GDAL_TYPES[array.dtype.name], opts)
    ds.SetGeoTransform(tuple(geotransform))
    if epsg:
        ds.SetProjection(srs_wkt(epsg))
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
        band.WriteArray(array[b])
    if alpha is not None:
        ds.GetRasterBand(count).WriteArray(alpha)
    ds.FlushCache()
    ds = None
    return str(path)


def smooth_field(rng, rows, cols, low, high, dtype, noise=0.05):
    """Terrain-like content plus noise (compresses like real imagery)."""
    y = np.linspace(0, rng.uniform(2, 6), rows)[:, None]
    x = np.linspace(0, rng.uniform(2, 6), cols)[None, :]
    field = (np.sin(x + rng.uniform(0, 6)) + np.cos(y * 1.3 + rng.uniform(0, 6))
             + 0.5 * np.sin(x * 3.1 + y * 2.3))
    field = (field - field.min()) / max(np.ptp(field), 1e-9)
    field = field + noise * rng.standard_normal((rows, cols))
    values = low + (high - low) * np.clip(field, 0, 1)
    if np.dtype(dtype).kind in "iu":
        values = np.rint(values)
    return values.astype(dtype)


def tile_set(folder, seed=0, grid=(2, 2), size=(90, 70), overlap=15, bands=1,
             dtype="uint8", nodata=0, holes=True, origin=(500000.0, 5000000.0), res=10.0,
             epsg=32633, low=None, high=None, collar=3, noise=0.05):
    """Write an overlapping grid of tiles with nodata collars and holes; return paths.

    Valid values never equal ``nodata``. Tiles are aligned to one pixel grid.
    """
    rng = np.random.default_rng(seed)
    rows_n, cols_n = grid
    w, h = size
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if low is None:
        low = 1 if info is not None and info.min >= 0 else (-1000 if info is not None else -50.0)
    if high is None:
        high = min(info.max, 250 if dtype == "uint8" else 3000) if info is not None else 50.0
    paths = []
    for r in range(rows_n):
        for c in range(cols_n):
            data = np.stack([smooth_field(rng, h, w, low, high, dtype, noise) for _ in range(bands)])
            if nodata is not None:
                data[data == np.dtype(dtype).type(nodata)] = np.dtype(dtype).type(low + 1)
                if collar:
                    data[:, :collar, :] = nodata
                    data[:, :, -collar:] = nodata
                if holes:
                    for _ in range(3):
                        y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
                        band = rng.integers(0, bands + 1)  # sometimes one band only
                        sel = slice(None) if band == bands else slice(band, band + 1)
                        data[sel, y0:y0 + rng.integers(3, 10), x0:x0 + rng.integers(3, 10)] = nodata
            x = origin[0] + c * (w - overlap) * res
            y = origin[1] - r * (h - overlap) * res
            path = os.path.join(str(folder), f"tile_{seed}_{r}_{c}.tif")
            write_raster(path, data, (x, res, 0, y, 0, -res), epsg, nodata)
            paths.append(path)
    return paths
