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
    box = _rectangle(footprint)
    if box is not None:
        return _rectangle_distance(footprint.shape, box, limit)
    dist = np.full(footprint.shape, limit, np.float32)
    invalid = ~footprint
    rows = np.flatnonzero(invalid.any(axis=1))
    if rows.size == 0:
        return dist
    cols = np.flatnonzero(invalid.any(axis=0))
    # Only pixels within ``reach`` rows and columns of an invalid pixel can be nearer
    # than ``limit``, and every invalid pixel lies in that box: it alone is computed.
    reach = int(math.ceil(limit))
    r0, r1 = max(rows[0] - reach, 0), min(rows[-1] + reach + 1, footprint.shape[0])
    c0, c1 = max(cols[0] - reach, 0), min(cols[-1] + reach + 1, footprint.shape[1])
    dist[r0:r1, c0:c1] = _exact(invalid[r0:r1, c0:c1], limit, reach)
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


def _rectangle(footprint):
    """(r0, r1, c0, c1) when the footprint is one filled rectangle (an input without
    holes: the common case), else None."""
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    if not len(rows):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (r1 - r0) * (c1 - c0) != np.count_nonzero(footprint) or not footprint[r0:r1, c0:c1].all():
        return None
    return r0, r1, c0, c1


def _rectangle_distance(shape, box, limit):
    """:func:`edge_distance` of a filled rectangle: the nearest outside pixel is straight
    across the nearest of its sides that lies inside the array (the same integer
    distances as the general passes, so the same float32 values)."""
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
