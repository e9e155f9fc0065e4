"""Rules that need every input of a pixel at once: median, percentile, mode.

A fold cannot compute these, so the window (or a strip of its rows, see
:func:`~.render.render_window`) is read into a float64 stack of shape
(n, bands, rows, cols) where invalid samples are NaN, sorted along the first
axis in place (NaNs last), and reduced with the number of valid samples per
pixel. Computing in float64 is exact for every integer input up to 2**53.

Each reduction ``reduce(stack, count, q)`` returns float64 values of shape
(bands, rows, cols); pixels with ``count == 0`` hold anything (the caller marks
them nodata). The results equal numpy's ``nanmedian``, ``nanpercentile``
(linear method) and a mode picking the smallest of equally frequent values.
"""

import numpy as np

STACK_SAMPLE_BYTES = 8       # one float64 per input, band and pixel
STACK_TEMP_BYTES = 8 * 8     # per band and pixel: count and the reductions' temporaries


def _take(stack, index):
    """stack[index[b, r, c], b, r, c] for an index array of shape (bands, rows, cols)."""
    return np.take_along_axis(stack, index[None], axis=0)[0]


def reduce_percentile(stack, count, q):
    """The q-th percentile of the valid samples, as ``numpy.nanpercentile``'s linear method."""
    position = (count.astype(np.float64) - 1) * (np.float64(q) / 100)
    np.maximum(position, 0, out=position)
    below = np.floor(position)
    gamma = position - below
    below = below.astype(np.intp)
    above = np.minimum(below + 1, np.maximum(count.astype(np.intp) - 1, 0))
    a = _take(stack, below)
    b = _take(stack, above)
    # numpy's _lerp: interpolate from the nearer end so the result stays in [a, b].
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def reduce_median(stack, count, q=None):
    """The median of the valid samples (mean of the two middle ones), as ``numpy.nanmedian``."""
    k = count.astype(np.intp)
    low = np.maximum((k - 1) // 2, 0)
    high = np.maximum(k // 2, 0)
    a = _take(stack, low)
    b = _take(stack, high)
    out = a + b
    out /= 2
    return out


def reduce_mode(stack, count, q=None):
    """The most frequent valid sample; the smallest among equally frequent ones.

    The stack is sorted, so equal values form runs; a later run replaces the
    best only when strictly longer, which keeps the smallest on ties. NaNs (the
    invalid samples, sorted last) never equal their neighbour, so they never win.
    """
    best = stack[0].copy()
    best_run = np.ones(best.shape, np.int32)
    run = np.ones(best.shape, np.int32)
    same = np.empty(best.shape, bool)
    for i in range(1, stack.shape[0]):
        np.equal(stack[i], stack[i - 1], out=same)
        run += 1
        run[~same] = 1
        np.greater(run, best_run, out=same)
        np.copyto(best, stack[i], where=same)
        np.copyto(best_run, run, where=same)
    return best


def fill_stack(stack, count, j, ox, oy, data, valid):
    """Put one input's valid ``data`` at layer ``j`` (pre-filled with NaN) and count them."""
    h, w = data.shape[1:]
    layer = stack[j, :, oy:oy + h, ox:ox + w]
    if valid is None:
        np.copyto(layer, data, casting="unsafe")
    else:
        np.copyto(layer, data, where=valid, casting="unsafe")
    # Counted from the layer: a NaN pixel in a float input without nodata is not a value.
    count[:, oy:oy + h, ox:ox + w] += ~np.isnan(layer)


def reduce_stack(rule, stack, count, q):
    """Sort ``stack`` in place (NaNs last) and apply ``rule.reduce``."""
    stack.sort(axis=0)
    return rule.reduce(stack, count, q)
