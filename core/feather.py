"""Feather weights: distance from each valid pixel to the edge of its input's footprint.

A window is read with a halo of ``ceil(FEATHER_DISTANCE)`` pixels, so every pixel
within the feather distance of the window is seen, and the weights do not depend
on how the grid is cut into windows. Outside the output grid nothing is known,
so the grid's own border is not treated as an edge.
"""

import math

import numpy as np


def edge_distance(footprint, limit):
    """Euclidean distance to the nearest pixel outside the footprint, capped at ``limit``.

    Parameters
    ----------
    footprint : bool array (rows, cols)
        True where the input is valid.
    limit : float
        Cap (pixels). Pixels with no invalid pixel within ``limit`` get ``limit``.

    Returns
    -------
    float32 array (rows, cols)
        Distance between pixel centres; 0 outside the footprint, at least 1
        inside it. Exact (not a chamfer approximation) up to ``limit``.
    """
    footprint = np.asarray(footprint, bool)
    if footprint.all():
        return np.full(footprint.shape, limit, np.float32)
    rows = np.flatnonzero(footprint.any(axis=1))
    if rows.size == 0:
        return np.zeros(footprint.shape, np.float32)
    cols = np.flatnonzero(footprint.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # The distance to the invalid pixels is the smaller of the distances to those outside
    # the footprint's bounding box (closed form) and to the holes inside it. Only pixels
    # within ``reach`` rows and columns of a hole can be nearer to it than ``limit``, and
    # every hole lies in that box: it alone is passed (inputs have few, small holes).
    dist = _rectangle_distance(footprint.shape, (r0, r1, c0, c1), limit)
    holes = ~footprint[r0:r1, c0:c1]
    hole_rows = np.flatnonzero(holes.any(axis=1))
    if hole_rows.size == 0:
        return dist
    hole_cols = np.flatnonzero(holes.any(axis=0))
    reach = int(math.ceil(limit))
    y0, y1 = max(hole_rows[0] - reach, 0), min(hole_rows[-1] + reach + 1, r1 - r0)
    x0, x1 = max(hole_cols[0] - reach, 0), min(hole_cols[-1] + reach + 1, c1 - c0)
    part = dist[r0 + y0:r0 + y1, c0 + x0:c0 + x1]
    np.minimum(part, _exact(holes[y0:y1, x0:x1], limit, reach), out=part)
    return dist


def _exact(invalid, limit, reach):
    """:func:`edge_distance` of the box holding every invalid pixel (and its reach)."""
    rows, cols = invalid.shape
    far = 10 ** 9
    index = np.arange(cols, dtype=np.int64)
    # Horizontal pass: distance to the nearest invalid pixel in the same row.
    left = np.where(invalid, index, -far)
    np.maximum.accumulate(left, axis=1, out=left)
    right = np.where(invalid, index, far)
    right = np.minimum.accumulate(right[:, ::-1], axis=1)[:, ::-1]
    g = np.minimum(index - left, right - index).astype(np.float32)
    np.minimum(g, np.float32(reach + 1), out=g)
    g2 = g * g
    # Vertical pass: d2(y, x) = min over |dy| <= reach of g2(y + dy, x) + dy^2. A column
    # whose g2 is the same in every row (beside a vertical edge) keeps it: only the
    # columns between the first and the last that vary are passed.
    d2 = g2.copy()
    varying = np.flatnonzero(g2.min(axis=0) != g2.max(axis=0))
    if varying.size:
        _vertical(g2[:, varying[0]:varying[-1] + 1], d2[:, varying[0]:varying[-1] + 1], reach)
    dist = np.sqrt(d2, out=d2)
    return np.minimum(dist, np.float32(limit), out=dist)


def _vertical(g2, d2, reach):
    rows = g2.shape[0]
    tmp = np.empty_like(g2)
    for dy in range(1, min(reach, rows - 1) + 1):
        step = np.float32(dy * dy)
        shifted = np.add(g2[:-dy], step, out=tmp[dy:])
        np.minimum(d2[dy:], shifted, out=d2[dy:])
        shifted = np.add(g2[dy:], step, out=tmp[:-dy])
        np.minimum(d2[:-dy], shifted, out=d2[:-dy])


def _rectangle_distance(shape, box, limit):
    """:func:`edge_distance` of a filled rectangle: the nearest outside pixel is straight
    across the nearest of its sides that lies inside the array (the same integer
    distances as the passes of :func:`_exact`, so the same float32 values)."""
    r0, r1, c0, c1 = box

    def along(size, lo, hi):
        index = np.arange(size, dtype=np.float32)
        d = np.full(size, np.float32(limit))
        if lo > 0:
            np.minimum(d, index - np.float32(lo - 1), out=d)
        if hi < size:
            np.minimum(d, np.float32(hi) - index, out=d)
        d[:lo] = 0
        d[hi:] = 0
        return d

    return np.minimum.outer(along(shape[0], r0, r1), along(shape[1], c0, c1))


def weights(footprint, distance):
    """Feather weight: 0 outside the footprint, rising to 1 at ``distance`` pixels inside."""
    return edge_distance(footprint, distance) / np.float32(distance)


# An input is folded a strip of rows at a time, about this many samples: the strip's
# temporaries stay in the CPU cache (3x faster than whole-window passes).
STRIP_SAMPLES = 1 << 15


def exact_fold(dtype):
    """True when ``value * weight`` (a float32 weight) is exact in float64 for ``dtype``.

    Then, where one input alone is valid, ``(v * w) / w`` gives ``v`` back exactly,
    and no count or copy of that value is needed: up to 29 significant bits (24 of
    the weight, 53 in float64), i.e. integers of up to 16 bits and float32.
    """
    dtype = np.dtype(dtype)
    return dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2) or \
        (dtype.kind == "f" and dtype.itemsize <= 4)


def fold(acc, data, valid, weight):
    """Add one input to a window's feather sums: ``acc.value`` += w * v, ``acc.weight`` += w.

    Parameters
    ----------
    acc : Acc
        ``value`` and ``weight`` float64, ``filled``; ``count`` and ``single`` too
        when the inputs' type is not :func:`exact_fold`.
    data : array (bands, rows, cols)
    valid : bool array like ``data``, or None when all are valid
    weight : array (rows, cols)
        Used as float32; > 0 wherever a band is valid (see :func:`weights`).
    """
    weight = np.asarray(weight, np.float32)
    bands, rows, cols = data.shape
    step = max(1, STRIP_SAMPLES // max(bands * cols, 1))
    # float64 (holding float32 values): the sums then add without a cast (20% faster).
    wv = np.empty((bands, min(step, rows), cols), np.float64)
    prod = np.empty(wv.shape, np.float64)
    masked = valid is not None and data.dtype.kind == "f"  # NaN * 0 is NaN: skip, not zero
    for r0 in range(0, rows, step):
        part = np.s_[:, r0:r0 + step]
        n = min(step, rows - r0)
        w, p = wv[:, :n], prod[:, :n]
        if valid is None:
            np.copyto(w, weight[None, r0:r0 + n])
        else:
            np.multiply(valid[part], weight[None, r0:r0 + n], out=w)
        if masked:
            p.fill(0)
        np.multiply(data[part], w, out=p, dtype=np.float64, where=valid[part] if masked else True)
        np.add(acc.value[part], p, out=acc.value[part])
        np.add(acc.weight[part], w, out=acc.weight[part])
        ok = True if valid is None else valid[part]
        if acc.single is not None:
            np.add(acc.count[part], ok, out=acc.count[part], casting="unsafe")
            np.copyto(acc.single[part], data[part], where=ok, casting="unsafe")
        np.logical_or(acc.filled[part], ok, out=acc.filled[part])


def result(acc):
    """Σ(w·v)/Σw, in place in ``acc.value``; where one input alone is valid, its value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        blend = np.divide(acc.value, acc.weight, out=acc.value)
    if acc.single is not None:
        # Without an exact product, the single value is taken as is (no rounding error).
        np.copyto(blend, acc.single, where=acc.count <= 1, casting="unsafe")
    return blend
