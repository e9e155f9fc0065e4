"""METHOD first / last without accumulators: inputs read straight into the output window.

When every input of a window marks its holes with the output's nodata value and
nothing else (integer type equal to the output's, no mask or alpha band, no
INPUT_NODATA), an output pixel is filled exactly where it differs from nodata. Such
a window needs no validity masks and no accumulators: an input's part that no
earlier input touched is read directly into the output buffer (its holes already
hold nodata), and a part overlapping earlier ones is read aside and copied where
the output still holds nodata. An input whose part is already full is not read
(the rules' stop-when-full, per input). The pixels are those of the general path
(:func:`~.render.render_window`); only the work differs.
"""

import numpy as np

from .composite import update_first
from .errors import Cancelled
from .readers import read_data


def possible(rule, specs, work_dtype, out_dtype, nodata_out, nodata_input, alpha):
    """True when every window of a plan with these settings takes the direct path
    (``specs``: every input's, None for an input off the grid; ``alpha``: ADD_ALPHA)."""
    if rule.update is not update_first or rule.stack or rule.weights or alpha:
        return False
    return _plain_all(specs, work_dtype, out_dtype, nodata_out, nodata_input)


def applies(plan, ids, out):
    """True when window sources ``ids`` can be composited by :func:`render` into ``out``.

    METHOD first and last, and feather over a window one input reaches (its blend is
    that input's value: no rounding).
    """
    rule = plan.rule
    single = rule.weights and not rule.stack and len(ids) <= 1
    if not (single or (rule.update is update_first and not rule.stack)):
        return False
    specs = [plan.specs[i] for i in ids]
    return (out is not None and plan.harmony is None and plan.out_bands == plan.band_count
            and len(next((s.bands for s in specs), ())) in (0, plan.band_count)
            and _plain_all(specs, plan.work_dtype, plan.out_dtype, plan.nodata_out,
                           plan.nodata_input))


def _plain_all(specs, work_dtype, out_dtype, nodata_out, nodata_input):
    dtype = np.dtype(out_dtype)
    if (nodata_out is None or nodata_input is not None or dtype.kind not in "iu"
            or dtype != np.dtype(work_dtype)):
        return False
    bands = len(next((s.bands for s in specs if s is not None), ()))
    return all(s is None or _plain(s, dtype, float(nodata_out), bands) for s in specs)


def _plain(spec, dtype, fill, bands):
    """The input's only validity rule is ``value != fill`` on every band, in ``dtype``."""
    return (np.dtype(spec.dtype) == dtype and spec.mask == "none" and not spec.shared
            and not spec.per_band and len(spec.bands) == bands
            and all(nd is not None and float(nd) == fill for nd in spec.nodata))


def render(plan, window, ctx, ids, out):
    """Composite window ``window`` from sources ``ids`` into ``out`` (bands, h, w).

    Returns
    -------
    (numpy.ndarray, int)
        ``out``, and 0: no valid pixel can equal nodata here.
    """
    if plan.rule.reverse:
        ids = ids[::-1]
    fill = out.dtype.type(plan.nodata_out)
    parts = [(i, p) for i in ids if (p := window_part(plan.specs[i].bbox, window)) is not None]
    if not parts or parts[0][1] != (0, 0, window.w, window.h):
        out.fill(fill)  # pixels no input reaches, and the test below, need nodata
    done = _Parts()
    for i, part in parts:
        if ctx.cancel_event.is_set():
            raise Cancelled()
        px0, py0, px1, py1 = part
        view = out[:, py0:py1, px0:px1]
        spec = plan.specs[i]
        grid = (window.x + px0, window.y + py0, window.x + px1, window.y + py1)
        if not done.overlaps(part):
            read_data(spec, ctx.handles, *grid, view)
        else:
            empty = np.equal(view, fill, out=ctx.scratch.array("direct.empty", view.shape, bool))
            if not empty.any():
                continue  # already full: this input cannot show
            data = ctx.scratch.array("src", view.shape, out.dtype)
            read_data(spec, ctx.handles, *grid, data)
            np.copyto(view, data, where=empty)
        done.add(part)
    return out, 0


def window_part(bbox, window):
    """The input's bbox in window pixels (x0, y0, x1, y1), or None when it misses."""
    x0, y0 = max(bbox[0] - window.x, 0), max(bbox[1] - window.y, 0)
    x1, y1 = min(bbox[2] - window.x, window.w), min(bbox[3] - window.y, window.h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _Parts:
    """The window parts composited so far, filed by the CELL x CELL px cells they touch:
    asking whether a part overlaps one of them looks at the few parts of its own cells,
    not at every earlier input (a window over thousands of small tiles)."""

    CELL = 256

    def __init__(self):
        self.cells = {}

    def _cells(self, part):
        c = self.CELL
        return [(cx, cy) for cx in range(part[0] // c, (part[2] - 1) // c + 1)
                for cy in range(part[1] // c, (part[3] - 1) // c + 1)]

    def overlaps(self, part):
        return any(_overlap(part, q) for key in self._cells(part)
                   for q in self.cells.get(key, ()))

    def add(self, part):
        for key in self._cells(part):
            self.cells.setdefault(key, []).append(part)
