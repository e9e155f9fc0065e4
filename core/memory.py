"""The memory budget: how MEMORY_MB is split between GDAL's cache and pixel buffers.

Model (bytes)::

    MEMORY_MB = GDAL block cache                         (cache_fraction of the budget)
              + GDAL working memory outside the cache    (open datasets, compression jobs,
                                                           the HTTP cache for remote inputs;
                                                           on GDAL < 3.10 also the cache's
                                                           freed blocks still resident)
              + threads x warp working memory            (only when inputs are reprojected)
              + threads x per-thread window working set  (accumulators, reads, temporaries)
              + (threads + 2) x finished output window   (recycled buffers: in the
                                                           workers, queued, being written)
              + what the writer copies of a window       (COG: a strip of rows whose
                                                           overviews GDAL computes)

The COG driver's step at the end runs alone, after the window buffers are freed:
:func:`cog_cache` gives it the cache that fits beside its own working memory.

The window side is the largest multiple of the output block size whose working
set fits what is left after the cache, at most MAX_CHUNK, and small enough that a
small mosaic still has several windows per thread (:func:`pipelined_side`). The
interpreter itself (Python, numpy, GDAL's libraries: about 60-100 MB) is not part
of the budget.
"""

import math
from dataclasses import dataclass

import numpy as np

from .stack import STACK_SAMPLE_BYTES, STACK_TEMP_BYTES

MB = 2 ** 20
CACHE_FRACTION = 0.25
CACHE_MIN = 8 * MB
CACHE_MAX = 1024 * MB
MAX_CHUNK = 2048  # larger windows lose the overlap of reading and compressing
# Feather (a halo): a window one input reaches is read straight, without halo or weights,
# and larger windows have fewer of those. 1024 px windows took 12% more CPU than 512 on
# the bench's 3x3 tiles of 2000 px.
FEATHER_MAX_CHUNK = 512
# A chosen window side leaves at least this many windows per worker thread (and
# MIN_WINDOWS in all) where the mosaic allows: with only a few large windows the
# first one is read before anything is compressed and the last one is compressed
# alone (measured on a 16 Mpix mosaic: 4 windows of 2048 px cost more time and page
# faults than 16 of 1024).
MIN_WINDOWS = 16
WINDOWS_PER_THREAD = 4
GDAL_OVERHEAD = 8 * MB
# GDAL before 3.10 (measured on 3.6.2 with glibc 2.36, 256 Mpix LZW, 64 MB cache): the
# heap holds 60-80 MB freed but resident beside the cache's live blocks, between two
# malloc_trim calls and with one malloc arena alike, also with uncompressed output and
# with large temporaries kept out of the heap; about one cache's worth. GDAL 3.10 and
# 3.13 (glibc 2.41) hold 3-8 MB. See README "Memory".
FREED_CACHE_FACTOR = 1.0
WARP_MEMORY = 16 * MB  # GDAL warper working memory of one reprojected read (per thread)
# The writer's copies of a strip of a window (pyramid.Sink): the /vsimem/ GeoTIFF, its
# overview levels, the contiguous strip and GDAL's overview buffers.
SINK_COPIES = 4
# The COG driver's working memory beside the cache (GDAL 3.13, 512 px blocks of 3 x uint16,
# measured with a 4 MB cache: 28 MB with 1 thread, 40 MB with 2): a fixed part, and
# compression jobs of about 8 blocks per thread.
COG_FIXED = 16 * MB
COG_BLOCKS_PER_THREAD = 8


@dataclass(frozen=True)
class Budget:
    """How one run spends its memory."""

    total: int           # MEMORY_MB in bytes
    cache: int           # GDAL block cache
    chunk: int           # window side, pixels
    threads: int         # worker threads
    in_flight: int       # finished windows that may wait for the writer
    per_window: int      # one thread's working set for a full window
    out_window: int      # one finished output window
    warp: int            # warp memory per thread (0 without reprojection)
    overhead: int        # GDAL working memory outside the cache (datasets, compression)
    fits: bool           # False when even the smallest window exceeds the budget
    depth: int = 0       # stack rules: the most inputs over one window
    stack_rows: int = 0  # stack rules: rows of a window stacked at a time
    compress: int = 0    # threads GDAL compresses output tiles on (0: ``threads``)
    sink: int = 0        # what the writer copies of a window (COG's streamed overviews)

    @property
    def estimated_peak(self):
        """Bytes this run may hold at most (cache + buffers)."""
        return (self.cache + self.overhead + self.threads * (self.per_window + self.warp)
                + (self.in_flight + 1) * self.out_window + self.sink)

    def summary(self):
        text = (f"{self.total / MB:.0f} MB budget: GDAL cache {self.cache / MB:.0f} MB, "
                f"{self.threads} thread(s) x {self.per_window / MB:.1f} MB window buffers "
                f"({self.chunk}x{self.chunk} px windows)")
        if self.depth:
            text += (f"; deepest stack {self.depth} input(s), stacked {self.stack_rows} "
                     f"row(s) at a time")
        return text


def window_working_set(chunk, bands, rule, input_dtype, out_dtype, halo=0, depth=0, rows=0,
                       direct=False):
    """Bytes one thread holds while rendering a ``chunk`` x ``chunk`` window.

    Accumulators and the bool scratch of the window, the read buffers of one
    input (data, validity, mask, temporary), the float result of mean/feather
    and, for feather, the distance transform of the haloed window. For a stack
    rule, the float64 stack of ``depth`` inputs over ``rows`` rows of the window
    (all of them when 0) and its reduction's temporaries; reads are then of
    ``rows`` rows too. ``direct``: the window is read straight into the output
    buffer (:mod:`.direct`), with one input's data and a bool mask beside it.
    """
    px = chunk * chunk * bands
    if direct:
        return px * (np.dtype(input_dtype).itemsize + 1)
    read_side = chunk + 2 * halo
    read_px = read_side * read_side * bands
    stack = 0
    if rule.stack:
        strip_px = chunk * min(rows or chunk, chunk) * bands
        read_px = strip_px
        stack = strip_px * (max(depth, 1) * STACK_SAMPLE_BYTES + STACK_TEMP_BYTES)
    in_size = np.dtype(input_dtype).itemsize
    acc = px * (rule.bytes_per_sample(input_dtype) + 1)
    read = read_px * (in_size + 3)
    finish = px * (8 + np.dtype(out_dtype).itemsize) if rule.work != "input" \
        else px * np.dtype(out_dtype).itemsize
    feather = read_side * read_side * 30 + px * 8 if rule.weights else 0
    return acc + read + finish + feather + stack


def plan_budget(memory_mb, threads, block, bands, rule, input_dtype, out_dtype,
                grid_size, chunk=0, halo=0, warped=False, depth=None, io_cache=0,
                direct=False, compressed=True, sink_rows=0, freed_cache=False):
    """Choose the cache size and window side for a run.

    Parameters
    ----------
    memory_mb : int
    threads : int
        Worker threads wanted (reduced when the budget cannot feed them; halved, and
        the output compressed on all of them, with a ``halo`` and ``compressed``).
    block : int
        Output block side; the window side is a multiple of it.
    grid_size : (width, height)
    chunk : int
        Window side asked for (0 = choose); rounded up to a multiple of ``block``.
    depth : callable(side) -> int, optional
        For a stack rule: the most inputs over one window of that side (from the
        source index). When a whole window's stack does not fit, the window is
        stacked a strip of rows at a time (``Budget.stack_rows``).
    io_cache : int
        Bytes of GDAL's HTTP block cache when inputs are read over the network.
    direct : bool
        Every window is read straight into its output buffer (no accumulators).
    compressed : bool
        The output is compressed as it is written (GDAL's NUM_THREADS).
    sink_rows : int
        Rows of a window the writer copies at a time (0: none), ``SINK_COPIES`` times.
    freed_cache : bool
        GDAL's freed cache blocks stay resident (GDAL < 3.10): counted as
        ``FREED_CACHE_FACTOR`` x the cache, beside it.

    Returns
    -------
    Budget
    """
    total = int(memory_mb) * MB
    cache = int(min(max(total * CACHE_FRACTION, CACHE_MIN), CACHE_MAX))
    warp = WARP_MEMORY if warped else 0
    compress = threads
    if halo and compressed:
        # Feather: the input blocks beside a window (its halo) are decoded again by every
        # thread that reads them (each has its own datasets), so half the threads render
        # and GDAL compresses on all of them (the bench: 20% less CPU, no slower).
        threads = max(1, threads // 2)
    # GDAL's own working memory outside the cache: open datasets (16 per thread),
    # and the GeoTIFF writer's compression jobs (about two tiles per thread).
    block_bytes = block * block * bands * np.dtype(out_dtype).itemsize
    overhead = GDAL_OVERHEAD + compress * 2 * block_bytes + int(io_cache)
    if freed_cache:
        overhead += int(FREED_CACHE_FACTOR * cache)
    out_size = np.dtype(out_dtype).itemsize
    largest = max(block, math.ceil(max(grid_size) / block) * block)
    depths = {}

    def deepest(side):
        if not rule.stack or depth is None:
            return 0
        if side not in depths:
            depths[side] = depth(side) if callable(depth) else int(depth)
        return depths[side]

    def cost(side, nthreads, rows=0):
        per = window_working_set(side, bands, rule, input_dtype, out_dtype, halo,
                                 deepest(side), rows, direct)
        out = side * side * bands * out_size
        sink = SINK_COPIES * side * min(sink_rows, side) * bands * out_size
        return per, out, sink, (cache + overhead + nthreads * (per + warp) + (nthreads + 2) * out
                                + sink)

    if chunk:
        side = min(math.ceil(chunk / block) * block, largest)
        nthreads = threads
        while nthreads > 1 and cost(side, nthreads)[3] > total:
            nthreads -= 1
    else:
        nthreads = threads
        side = None
        cap = pipelined_side(grid_size, block, threads)
        while side is None:
            top = min(max(FEATHER_MAX_CHUNK, block) if halo else MAX_CHUNK, cap)
            fitting = [k * block for k in range(1, top // block + 1)
                       if k * block <= largest and cost(k * block, nthreads)[3] <= total]
            if fitting:
                side = fitting[-1]
            elif nthreads > 1:
                nthreads -= 1
            else:
                side = block
    rows = side if rule.stack else 0
    if rule.stack and cost(side, nthreads, rows)[3] > total:
        rows = _stack_rows(lambda r: cost(side, nthreads, r)[3] <= total, side)
    per, out, sink, need = cost(side, nthreads, rows)
    return Budget(total, cache, side, nthreads, nthreads + 1, per, out, warp, overhead,
                  need <= total, deepest(side), rows, compress, sink)


def cog_cache(budget, threads, block_bytes):
    """GDAL's cache for the COG driver's step: the run's cache, less when MEMORY_MB
    cannot hold it beside the driver's working memory (``threads`` compressing
    blocks of ``block_bytes``). A larger cache brought no speed (GDAL 3.13: the same
    CPU seconds with 64, 128 and 192 MB)."""
    working = COG_FIXED + threads * COG_BLOCKS_PER_THREAD * block_bytes
    return int(max(CACHE_MIN, min(budget.cache, budget.total - working)))


def pipelined_side(grid_size, block, threads):
    """The largest window side (a multiple of ``block``, at most MAX_CHUNK) that cuts
    a ``grid_size`` mosaic into enough windows to keep reading and compressing
    overlapped (see MIN_WINDOWS); ``block`` when even that gives fewer."""
    want = max(MIN_WINDOWS, WINDOWS_PER_THREAD * max(int(threads), 1))
    width, height = grid_size
    largest = max(block, math.ceil(max(grid_size) / block) * block)
    for side in range(min(MAX_CHUNK, largest) // block * block, block, -block):
        if math.ceil(width / side) * math.ceil(height / side) >= want:
            return side
    return block


def _stack_rows(fits, side):
    """The most rows (1..side) for which ``fits(rows)``; 1 when none does."""
    lo, hi = 1, side
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def smallest_budget_mb(fits_with, start_mb):
    """The smallest MEMORY_MB (from ``start_mb`` up) for which ``fits_with(mb)`` is True."""
    hi = max(int(start_mb), 16)
    while not fits_with(hi):
        hi *= 2
        if hi > 2 ** 30:
            return hi
    lo = max(int(start_mb), 16)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits_with(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
