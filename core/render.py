"""The per-window work: a pure function of (plan, window) -> pixels.

:func:`render_window` reads only the inputs the index lists for the window,
folds them with the plan's compositing rule and returns the finished output
window. It touches no shared state except the optional per-thread
:class:`Context` (open datasets and reusable buffers), so windows can run in
any order, on any thread, or later as tasks on a cluster.
"""

import threading

import numpy as np

from . import direct
from .composite import finalize, new_acc
from .errors import Cancelled
from .feather import weights as feather_weights
from .readers import Handles, Scratch, read
from .stack import fill_stack, reduce_stack


class Context:
    """Per-thread reading state: open datasets and scratch buffers."""

    def __init__(self, max_open=64, cancel_event=None):
        self.handles = Handles(max_open)
        self.scratch = Scratch()
        self.cancel_event = cancel_event or threading.Event()

    def close(self):
        self.handles.close()


def render_window(plan, window, ctx=None, out=None):
    """Composite one output window.

    Parameters
    ----------
    plan : Plan
    window : Window
    ctx : Context, optional
        Reused datasets and buffers of the calling thread.
    out : numpy.ndarray, optional
        (bands, h, w) buffer of the output type to write the result into.

    Returns
    -------
    (numpy.ndarray, int)
        The window (bands, h, w) in the output type, and how many valid pixels
        were moved off the nodata value.

    Raises
    ------
    InputError
        When an input cannot be read.
    Cancelled
        When ``ctx.cancel_event`` is set (checked between inputs).
    """
    ctx = ctx or Context()
    rule = plan.rule
    ids = plan.index.sources_for(window.index)
    if out is None:
        out = np.empty((plan.out_bands, window.h, window.w), plan.out_dtype)
    if direct.applies(plan, ids, out):
        return direct.render(plan, window, ctx, ids, out)
    acc = new_acc(rule, (plan.band_count, window.h, window.w), plan.work_dtype,
                  ctx.scratch.array)
    if rule.stack:
        _render_stacked(plan, window, ctx, acc, ids)
        return _finish(plan, window, acc, out)
    if rule.reverse:
        ids = ids[::-1]
    x0, y0, x1, y1 = window.bounds
    blend = rule.weights and len(ids) > 1
    ones = None
    unfilled = acc.filled.size
    for i in ids:
        if ctx.cancel_event.is_set():
            raise Cancelled()
        spec = plan.specs[i]
        if blend:
            got = _read_feathered(plan, spec, ctx, window)
        else:
            got = read(spec, ctx.handles, ctx.scratch, x0, y0, x1, y1, plan.nodata_input)
        if got is None:
            continue
        ox, oy, data, valid = _corrected(plan, i, ctx, got[:4])
        weight = got[4] if blend else None
        if rule.weights and weight is None:
            if ones is None or ones.shape != data.shape[1:]:
                ones = np.ones(data.shape[1:], np.float32)
            weight = ones
        filled = rule.update(acc.view(ox, oy, data.shape[2], data.shape[1]), data, valid, weight)
        if rule.stop_when_full:
            # Counted on the input's part only: checking the whole window after each
            # of 256 small inputs cost more than reading them.
            unfilled -= filled
            if unfilled == 0:
                break
    return _finish(plan, window, acc, out)


def _finish(plan, window, acc, out):
    if out is None:
        out = np.empty((plan.out_bands, window.h, window.w), plan.out_dtype)
    if plan.out_bands == plan.band_count:
        return finalize(plan.rule, acc, plan.out_dtype, plan.nodata_out, out)
    # ADD_ALPHA: 255 where any band of any input is valid (gdalbuildvrt -addalpha).
    np.multiply(acc.filled.any(axis=0), 255, out=out[-1], casting="unsafe")
    values, moved = finalize(plan.rule, acc, plan.out_dtype, plan.nodata_out, out[:-1])
    return out, moved


def _render_stacked(plan, window, ctx, acc, ids):
    """Fill ``acc`` for a stack rule, stacking ``plan.budget.stack_rows`` rows at a time.

    Each strip reads every input's part of it into a float64 stack (NaN where
    invalid) and reduces it; pixels are independent, so strips and windows of
    any size give the same values.
    """
    x0, y0, x1, _ = window.bounds
    rows = plan.budget.stack_rows or window.h
    q = plan.options.percentile
    for r0 in range(0, window.h, rows):
        r1 = min(r0 + rows, window.h)
        shape = (plan.band_count, r1 - r0, window.w)
        stack = ctx.scratch.array("stack", (max(len(ids), 1),) + shape, np.float64)
        stack.fill(np.nan)
        count = ctx.scratch.array("stack.count", shape, np.uint32)
        count.fill(0)
        for j, i in enumerate(ids):
            if ctx.cancel_event.is_set():
                raise Cancelled()
            got = read(plan.specs[i], ctx.handles, ctx.scratch, x0, y0 + r0, x1, y0 + r1,
                       plan.nodata_input)
            if got is not None:
                fill_stack(stack, count, j, *_corrected(plan, i, ctx, got))
        acc.value[:, r0:r1] = reduce_stack(plan.rule, stack[:len(ids)] if ids else stack,
                                           count, q)
        np.greater(count, 0, out=acc.filled[:, r0:r1])


def _corrected(plan, i, ctx, got):
    """HARMONIZE: input ``i``'s data with its gain and offset applied (float64)."""
    if plan.harmony is None:
        return got
    ox, oy, data, valid = got
    out = ctx.scratch.array("harmonized", data.shape, np.float64)
    return ox, oy, plan.harmony.apply(i, data, out), valid


def _read_feathered(plan, spec, ctx, window):
    """Read a window with a halo; return its part in the window plus feather weights."""
    halo = plan.halo
    x0, y0, x1, y1 = window.bounds
    hx0, hy0 = max(x0 - halo, 0), max(y0 - halo, 0)
    hx1, hy1 = min(x1 + halo, plan.grid.width), min(y1 + halo, plan.grid.height)
    got = read(spec, ctx.handles, ctx.scratch, hx0, hy0, hx1, hy1, plan.nodata_input)
    if got is None:
        return None
    ox, oy, data, valid = got
    h, w = data.shape[1:]
    # The footprint over the whole haloed area: outside the input it is invalid.
    footprint = np.zeros((hy1 - hy0, hx1 - hx0), bool)
    footprint[oy:oy + h, ox:ox + w] = True if valid is None else valid.any(axis=0)
    weight = feather_weights(footprint, plan.feather_distance)
    # Crop everything to the window proper.
    cx0, cy0 = max(x0, hx0 + ox), max(y0, hy0 + oy)
    cx1, cy1 = min(x1, hx0 + ox + w), min(y1, hy0 + oy + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    sl = np.s_[cy0 - hy0 - oy:cy1 - hy0 - oy, cx0 - hx0 - ox:cx1 - hx0 - ox]
    data = data[(slice(None),) + sl]
    valid = None if valid is None else valid[(slice(None),) + sl]
    weight = weight[cy0 - hy0:cy1 - hy0, cx0 - hx0:cx1 - hx0]
    return cx0 - x0, cy0 - y0, data, valid, weight
