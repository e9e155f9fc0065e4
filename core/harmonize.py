"""HARMONIZE: per-input radiometric corrections fitted on the overlaps, in bounded memory.

Before the mosaic pass, :func:`fit` streams over a fixed coarse grid (the output
grid decimated so that it holds at most :data:`FIT_PIXELS` pixels; nearest
neighbour, through the normal read path), and for every pair of inputs meeting
in a coarse window accumulates per band the sums of their common valid pixels
(:mod:`.lsq` lists them). Pairs come from the source index, so the statistics
are O(pairs), never N x N, and a window holds only the inputs touching it.
:func:`.lsq.solve_band` then finds one gain (and offset) per input and band.

The coarse grid and its windows depend only on the output grid and MEMORY_MB,
never on THREADS or CHUNK_SIZE, so the coefficients are the same for any of
them. The :class:`Harmony` travels in the plan (render_window applies it to each
input before compositing) and in the checkpoint journal, so a resumed run
reuses the coefficients of the interrupted one.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from . import lsq
from .errors import Cancelled
from .gdalenv import cache_budget
from .grid import Grid
from .readers import Handles, Scratch, read
from .specs import build_spec
from .windows import SourceIndex, WindowPlan

FIT_PIXELS = 2_000_000   # the coarse grid holds at most this many pixels
FIT_CHUNK = 256          # side of the coarse windows (smaller when MEMORY_MB asks)
TABLE_ROWS = 50          # beyond this many inputs the log shows a summary, not a table


@dataclass
class Harmony:
    """Fitted corrections: input i, band b becomes ``gains[i, b] * x + offsets[i, b]``."""

    method: str
    gains: np.ndarray    # (inputs, bands) float64
    offsets: np.ndarray  # (inputs, bands) float64
    factor: int = 1      # decimation of the grid the statistics were taken on
    pairs: int = 0       # overlapping pairs used
    seconds: float = 0.0

    def apply(self, index, data, out):
        """``data`` of input ``index`` corrected into the float64 array ``out``."""
        np.multiply(data, self.gains[index][:, None, None], out=out, casting="unsafe")
        out += self.offsets[index][:, None, None]
        return out

    def to_json(self):
        return {"method": self.method, "gains": self.gains.tolist(),
                "offsets": self.offsets.tolist(), "factor": self.factor, "pairs": self.pairs}

    @classmethod
    def from_json(cls, data):
        return cls(data["method"], np.array(data["gains"], np.float64),
                   np.array(data["offsets"], np.float64), data.get("factor", 1),
                   data.get("pairs", 0))


def coarse_grid(grid, pixels=FIT_PIXELS):
    """The output grid decimated by a whole factor k so it holds at most ``pixels``."""
    k = max(1, math.ceil(math.sqrt(grid.width * grid.height / pixels)))
    gt = grid.geotransform
    return Grid(grid.crs_wkt, (gt[0], gt[1] * k, gt[2], gt[3], gt[4], gt[5] * k),
                -(-grid.width // k), -(-grid.height // k)), k


def fit_chunk(memory_mb, bands, depth):
    """Coarse window side: every input of the deepest window held at once as float64 + mask
    within half of MEMORY_MB (never below 16 pixels)."""
    per_pixel = max(depth, 1) * bands * (8 + 1) * 2
    side = int(math.sqrt(memory_mb * 2 ** 20 / 2 / per_pixel))
    return max(16, min(FIT_CHUNK, side // 16 * 16))


def pair_statistics(plan, cancel=None):
    """Per pair of overlapping inputs and band, the sums of their common valid pixels.

    Returns
    -------
    first, second : numpy.ndarray of int (pairs,)
    stats : numpy.ndarray (pairs, bands, 6) float64
    factor : int
    """
    grid, factor = coarse_grid(plan.grid)
    specs = [None if spec is None else build_spec(src, fp, grid, "nearest")
             for src, fp, spec in zip(plan.sources, plan.footprints, plan.specs)]
    boxes = [s.bbox if s else None for s in specs]
    depth = SourceIndex(WindowPlan(grid.width, grid.height, FIT_CHUNK), boxes).deepest()
    windows = WindowPlan(grid.width, grid.height,
                         fit_chunk(plan.options.memory_mb, plan.band_count, depth))
    index = SourceIndex(windows, boxes)
    handles, scratch = Handles(16), Scratch()
    sums = {}
    try:
        for window in windows:
            if cancel is not None and cancel():
                raise Cancelled()
            ids = index.sources_for(window.index)
            if len(ids) > 1:
                _window_pairs(plan, specs, ids, window, handles, scratch, sums)
    finally:
        handles.close()
    keys = sorted(sums)
    first = np.array([k[0] for k in keys], np.int64)
    second = np.array([k[1] for k in keys], np.int64)
    stats = np.array([sums[k] for k in keys]).reshape(len(keys), plan.band_count, 6)
    return first, second, stats, factor


def _window_pairs(plan, specs, ids, window, handles, scratch, sums):
    """Read every input touching a coarse window once; add each pair's sums."""
    x0, y0, x1, y1 = window.bounds
    held = []
    for i in ids:
        got = read(specs[i], handles, scratch, x0, y0, x1, y1, plan.nodata_input)
        if got is None:
            continue
        ox, oy, data, valid = got
        values = data.astype(np.float64)
        ok = np.isfinite(values)
        if valid is not None:
            ok &= valid
        if ok.any():
            held.append((i, ox, oy, values, ok))
    for a in range(len(held)):
        for b in range(a + 1, len(held)):
            _add_pair(held[a], held[b], sums)


def _add_pair(one, two, sums):
    i, ax, ay, av, am = one
    j, bx, by, bv, bm = two
    cx0, cy0 = max(ax, bx), max(ay, by)
    cx1 = min(ax + av.shape[2], bx + bv.shape[2])
    cy1 = min(ay + av.shape[1], by + bv.shape[1])
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sa = np.s_[:, cy0 - ay:cy1 - ay, cx0 - ax:cx1 - ax]
    sb = np.s_[:, cy0 - by:cy1 - by, cx0 - bx:cx1 - bx]
    common = am[sa] & bm[sb]
    if not common.any():
        return
    if i > j:
        i, j, av, bv, sa, sb = j, i, bv, av, sb, sa
    rows = []
    for band in range(common.shape[0]):
        m = common[band]
        xi, xj = av[sa][band][m], bv[sb][band][m]
        rows.append((m.sum(), xi.sum(), xj.sum(), xi @ xi, xj @ xj, xi @ xj))
    add = np.array(rows, np.float64).ravel()
    key = (i, j)
    if key in sums:
        sums[key] += add
    else:
        sums[key] = add


def fit(plan, log=None, cancel=None):
    """Fit the plan's HARMONIZE method; returns a :class:`Harmony` (None for ``none``)."""
    method = plan.options.harmonize
    if method == "none":
        return None
    log = log or (lambda message, level="info": None)
    started = time.monotonic()
    count, bands = len(plan.sources), plan.band_count
    with cache_budget(plan.budget.cache):
        first, second, stats, factor = pair_statistics(plan, cancel)
    gains, offsets = np.ones((count, bands)), np.zeros((count, bands))
    alone = np.zeros(count, bool)
    iterations = 0
    for b in range(bands):
        g, o, linked, its = lsq.solve_band(count, first, second, stats[:, b] if len(first)
                                           else np.zeros((0, 6)), method == "linear")
        gains[:, b], offsets[:, b] = g, o
        alone |= ~linked
        iterations = max(iterations, its)
    seconds = time.monotonic() - started
    harmony = Harmony(method, gains, offsets, factor, len(first), seconds)
    log(f"harmonize {method}: fitted on {len(first)} overlapping pair(s) at 1/{factor} "
        f"resolution in {seconds:.2f} s ({iterations} CG iteration(s))", "info")
    missed = [plan.sources[i].name for i in np.flatnonzero(alone) if plan.specs[i] is not None]
    if missed and count > 1:
        more = f" and {len(missed) - 5} more" if len(missed) > 5 else ""
        log(f"harmonize: {len(missed)} input(s) overlap no other input ({', '.join(missed[:5])}"
            f"{more}): kept as they are (gain 1, offset 0)", "warning")
    return harmony


def describe(plan):
    """Lines for the plan summary: the coefficients (a table, or a summary of many inputs)."""
    method = plan.options.harmonize
    harmony = getattr(plan, "harmony", None)
    if method == "none":
        return []
    if harmony is None:
        return [f"harmonize {method}: coefficients are fitted at run time on the overlaps"]
    lines = [f"harmonize {method}: {harmony.pairs} overlapping pair(s), statistics at "
             f"1/{harmony.factor} resolution"]
    g, o = harmony.gains, harmony.offsets
    if len(g) <= TABLE_ROWS:
        for i, src in enumerate(plan.sources):
            cells = ", ".join(f"{g[i, b]:.4f}" + (f"{o[i, b]:+.2f}" if method == "linear"
                                                   else "") for b in range(g.shape[1]))
            lines.append(f"  {src.name}: " + cells)
        return lines
    lines.append(f"  gain per band: min {g.min():.4f}, median {np.median(g):.4f}, "
                 f"max {g.max():.4f}")
    if method == "linear":
        lines.append(f"  offset per band: min {o.min():+.2f}, median {np.median(o):+.2f}, "
                     f"max {o.max():+.2f}")
    return lines


def attach(plan, journal=None, log=None, cancel=None):
    """Set ``plan.harmony``: the journal's coefficients when it has this method's, else fitted."""
    stored = (journal or {}).get("fingerprint", {}).get("harmonize")
    if stored and stored.get("method") == plan.options.harmonize and \
            np.shape(stored.get("gains")) == (len(plan.sources), plan.band_count):
        plan.harmony = Harmony.from_json(stored)
        if log:
            log(f"harmonize {plan.harmony.method}: coefficients of the interrupted run reused")
        return plan
    plan.harmony = fit(plan, log, cancel)
    return plan
