"""Synthetic data with known radiometric biases, and the figures that judge a harmonized mosaic.

One smooth field is cut into overlapping tiles; each tile and band gets a known
gain and offset (two flights or dates of the same ground). A perfect
harmonization gives the field back up to one global linear map per band.
Used by tests/unit/test_harmonize.py, the benchmark and tools/harmony_picture.py.
"""

import os

import numpy as np

from synth import smooth_field, write_raster


def biased_tiles(folder, seed=0, grid=(3, 3), tile=(160, 120), overlap=40, bands=2,
                 low=2000, high=12000, noise=0.01, gains=(0.75, 1.3), offsets=800,
                 res=10.0, origin=(500000.0, 5000000.0), nodata=0):
    """Write uint16 tiles of one field with a known gain and offset each; return a dict.

    Keys: ``paths``, ``field`` (bands, rows, cols float64 on the mosaic grid),
    ``rects`` (x0, y0, x1, y1 of each tile on that grid), ``gains`` and ``offsets``
    (tiles, bands).
    """
    rng = np.random.default_rng(seed)
    rows_n, cols_n = grid
    w, h = tile
    width = cols_n * (w - overlap) + overlap
    height = rows_n * (h - overlap) + overlap
    field = np.stack([smooth_field(rng, height, width, low, high, "float64", noise)
                      for _ in range(bands)])
    paths, rects = [], []
    n = rows_n * cols_n
    gain = rng.uniform(gains[0], gains[1], (n, bands))
    offset = rng.uniform(-offsets, offsets, (n, bands))
    for t in range(n):
        r, c = divmod(t, cols_n)
        x0, y0 = c * (w - overlap), r * (h - overlap)
        part = field[:, y0:y0 + h, x0:x0 + w] * gain[t][:, None, None] + offset[t][:, None, None]
        data = np.clip(np.rint(part), 1, 65535).astype("uint16")
        gt = (origin[0] + x0 * res, res, 0, origin[1] - y0 * res, 0, -res)
        path = os.path.join(str(folder), f"biased_{seed}_{r}_{c}.tif")
        paths.append(write_raster(path, data, gt, nodata=nodata))
        rects.append((x0, y0, x0 + w, y0 + h))
    return {"paths": paths, "field": field, "rects": rects, "gains": gain, "offsets": offset}


def relative_rmse(mosaic, field, valid=None):
    """Per band, the RMSE of ``mosaic`` against ``field`` after the best global linear map
    (least squares), relative to the field's standard deviation."""
    out = []
    for b in range(field.shape[0]):
        m = np.ones(field.shape[1:], bool) if valid is None else valid[b]
        x, y = field[b][m].astype(np.float64), mosaic[b][m].astype(np.float64)
        a, c = np.polyfit(x, y, 1)
        out.append(float(np.sqrt(np.mean(((y - c) / a - x) ** 2)) / x.std()))
    return out


def seam_ratio(mosaic, field, rects):
    """Mean absolute step across the tiles' inner edges, over the field's own mean
    pixel-to-pixel change at the same places (1 = no visible seam). The mosaic is first
    divided by its global scale against the field."""
    height, width = field.shape[1:]
    steps, natural = [], []
    m = mosaic.astype(np.float64) / np.array(global_scale(mosaic, field))[:, None, None]
    for x0, y0, x1, y1 in rects:
        for x in (x0, x1):
            if 0 < x < width:
                steps.append(np.abs(m[:, y0:y1, x] - m[:, y0:y1, x - 1]).ravel())
                natural.append(np.abs(field[:, y0:y1, x] - field[:, y0:y1, x - 1]).ravel())
        for y in (y0, y1):
            if 0 < y < height:
                steps.append(np.abs(m[:, y, x0:x1] - m[:, y - 1, x0:x1]).ravel())
                natural.append(np.abs(field[:, y, x0:x1] - field[:, y - 1, x0:x1]).ravel())
    return float(np.concatenate(steps).mean() / np.concatenate(natural).mean())


def global_scale(mosaic, field):
    """The slope of the best global linear map per band (to put the field on the mosaic's scale)."""
    return [float(np.polyfit(field[b].ravel(), mosaic[b].astype(np.float64).ravel(), 1)[0])
            for b in range(field.shape[0])]
