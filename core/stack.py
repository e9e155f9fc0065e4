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
SMALL_STACK = 8              # up to this depth: a sorting network and per-layer selects


def _take(stack, index):
    """stack[index[b, r, c], b, r, c] for an index array of shape (bands, rows, cols)."""
    if stack.shape[0] > SMALL_STACK:
        return np.take_along_axis(stack, index[None], axis=0)[0]
    # A few whole-layer selects beat numpy's fancy indexing on shallow stacks.
    out = stack[0].copy()
    hit = np.empty(index.shape, bool)
    for k in range(1, stack.shape[0]):
        np.copyto(out, stack[k], where=np.equal(index, k, out=hit))
    return out


def _network(n):
    """Batcher's odd-even merge sort for ``n`` items: a list of (i, j) compare-exchanges.

    Built for the next power of two and pruned of pairs reaching past ``n`` (those
    items would be +inf, so their exchanges never move anything).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return [(a, b) for a, b in pairs if b < n]


def sort_stack(stack):
    """Sort ``stack`` along its first axis in place, NaNs last (as ``ndarray.sort``)."""
    n = stack.shape[0]
    if n > SMALL_STACK:
        stack.sort(axis=0)
        return
    if n < 2:
        return
    low = np.empty(stack.shape[1:], stack.dtype)
    for i, j in _network(n):
        # fmin takes the number when one side is NaN, maximum keeps the NaN: NaNs sink.
        np.fmin(stack[i], stack[j], out=low)
        np.maximum(stack[i], stack[j], out=stack[j])
        stack[i] = low


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
    n = stack.shape[0]
    if n == 1:
        return stack[0]
    if n <= SMALL_STACK:
        # Per count c, the middle samples are layers (c - 1) // 2 and c // 2: no index arrays.
        out = np.add(stack[0], stack[0])
        where = np.empty(count.shape, bool)
        for c in range(2, n + 1):
            np.add(stack[(c - 1) // 2], stack[c // 2], out=out, where=np.equal(count, c, out=where))
        out /= 2
        return out
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
    target = count[:, oy:oy + h, ox:ox + w]
    if data.dtype.kind in "iub":  # integers are never NaN: count the valid mask itself
        np.add(target, 1 if valid is None else valid, out=target, casting="unsafe")
    else:
        # Counted from the layer: a NaN pixel in a float input without nodata is not a value.
        target += ~np.isnan(layer)


def reduce_stack(rule, stack, count, q):
    """Sort ``stack`` in place (NaNs last) and apply ``rule.reduce``."""
    sort_stack(stack)
    return rule.reduce(stack, count, q)
