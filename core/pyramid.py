"""COG output with streamed overviews: the partial is a fast intermediate, compressed once.

For COG=true (local executor) ``OUTPUT.partial`` is created uncompressed with
its internal overview levels, empty. Each window written fills its share of
the first ``streamed`` levels: GDAL itself computes them from the window alone
(BuildOverviews on a /vsimem/ GeoTIFF copy of the window).
That is exactly what GDAL computes from the whole mosaic while every level
halves the one above it exactly: GDAL averages level k from level k-1, and a
2 x 2 box never crosses a window edge when the width, the height and the window
side are multiples of ``2**streamed``. After an odd size GDAL weights source
pixels by their fractional coverage, so the levels from there on are computed
at the end from the last streamed level (``1/4**streamed`` of the pixels; the
whole mosaic only when its width or height is odd). The COG driver then only
compresses (OVERVIEWS=FORCE_USE_EXISTING).

The Dask executor appends tiles its workers compressed with the output's
options, so with DASK_SCHEDULER the partial stays compressed (:func:`streams`
is False) and GDAL builds its overviews at the end (see engine._finish).
"""

import itertools

from osgeo import gdal

from . import bandmeta, writer
from .gdalenv import GdalFailure, check, check_status
from .options import parse_dask

# Options of the output kept for the intermediate (layout, not compression).
KEPT = ("TILED", "BLOCKXSIZE", "BLOCKYSIZE", "BIGTIFF", "NUM_THREADS", "ALPHA", "PIXELTYPE",
        "SPARSE_OK", "INTERLEAVE", "NBITS")
INTERMEDIATE = {"COMPRESS": "NONE"}
# Of those, what the /vsimem/ copy of a window keeps (what decides GDAL's overview values).
WINDOW_KEPT = ("ALPHA", "PIXELTYPE", "INTERLEAVE", "NBITS")
_names = itertools.count()
LEVELS_SUFFIX = ".levels"  # beside the partial: see finish


def streams(plan):
    """True when the partial is the COG's intermediate with streamed overviews
    (``plan``: a Plan, or the run's Options)."""
    options = getattr(plan, "options", plan)
    return bool(options.cog) and parse_dask(options.dask_scheduler)[0] is None


def factors(plan):
    """The overview decimation factors of the output (as the COG driver chooses them)."""
    return writer.overview_factors(plan.grid.width, plan.grid.height, plan.block)


def streamed(plan):
    """How many of the first levels are filled window by window (see the module doc)."""
    count = 0
    for _ in factors(plan):
        step = 2 ** (count + 1)
        if plan.grid.width % step or plan.grid.height % step or plan.budget.chunk % step:
            break
        count += 1
    return count


def strip_rows(plan, count=None):
    """Rows of a window whose overviews are computed at a time: the block height,
    rounded up to a multiple of ``2**count`` (a strip's first row must start a 2 x 2
    box of every streamed level)."""
    step = 2 ** (streamed(plan) if count is None else count)
    return -(-plan.block // step) * step


def partial_options(plan):
    """Creation options of the partial: the plan's, or for :func:`streams` the intermediate's."""
    if not streams(plan):
        return dict(plan.creation_options)
    co = {k: v for k, v in plan.creation_options.items() if k.upper() in KEPT}
    co.update(INTERMEDIATE)
    return co


def layout(plan):
    """What the journal records of the partial's layout (None: the plan's options)."""
    if not streams(plan):
        return None
    return {"intermediate": INTERMEDIATE, "overviews": factors(plan), "streamed": streamed(plan)}


def partial_bytes(plan):
    """About the size of an uncompressed partial (with its overviews for :func:`streams`)."""
    total, (w, h) = 0, (plan.grid.width, plan.grid.height)
    for factor in [1] + (factors(plan) if streams(plan) else []):
        total += -(-w // factor) * -(-h // factor)
    return total * plan.raw_bytes // (w * h)


def prepare(ds, plan):
    """Create the empty overview levels in a new partial ``ds``."""
    levels = factors(plan)
    if streams(plan) and levels:
        check_status(ds.BuildOverviews, "NONE", levels)


class Sink:
    """Wraps an executor's sink: each window written also fills its overview pixels."""

    def __init__(self, inner, box, plan):
        self.inner, self.box, self.plan = inner, box, plan
        self.count = streamed(plan)
        self.resampling = bandmeta.overview_resampling(plan.band_meta)
        band = box[0].GetRasterBand(1)
        self.levels = [band.GetOverview(k).GetDataset() for k in range(self.count)]

    def write(self, window, array):
        self.inner.write(window, array)
        if self.count:
            try:
                self._levels(window, array)
            except GdalFailure as exc:
                raise writer.output_error(self.inner.path, exc, f"writing the overviews of "
                                          f"window {window.index + 1} failed") from None

    def _levels(self, window, array):
        # A strip of rows at a time: the /vsimem/ copy and GDAL's overview buffers
        # stay a fraction of a window (a whole 2048 px window added 80 MB to the peak).
        rows = strip_rows(self.plan, self.count)
        for top in range(0, window.h, rows):
            h = min(rows, window.h - top)
            strip = type(window)(window.index, window.x, window.y + top, window.w, h)
            self._strip_levels(strip, array[:, top:top + h])

    def _strip_levels(self, window, array):
        path = f"/vsimem/streaming_mosaic_pyramid_{next(_names)}.tif"
        # Strips: GDAL builds a window's overviews 3 times faster than in tiles (6.8 ms
        # instead of 22 ms CPU for 512 x 512 x 3 uint16, GDAL 3.6); the values are the same.
        co = {k: v for k, v in partial_options(self.plan).items() if k in WINDOW_KEPT}
        plan = self.plan
        ds = check(gdal.GetDriverByName("GTiff").Create, path, window.w, window.h,
                   plan.out_bands, writer.gdal_type(plan.out_dtype),
                   [f"{k}={v}" for k, v in co.items()])
        try:
            if plan.nodata_out is not None:
                for b in range(1, plan.band_count + 1):
                    ds.GetRasterBand(b).SetNoDataValue(plan.nodata_out)
            if plan.out_bands > plan.band_count:
                ds.GetRasterBand(plan.out_bands).SetColorInterpretation(gdal.GCI_AlphaBand)
            writer.write_window(ds, path, _at_origin(window), array)
            check_status(ds.BuildOverviews, self.resampling,
                         [2 ** (k + 1) for k in range(self.count)])
            band = ds.GetRasterBand(1)
            for k, level in enumerate(self.levels):
                src = band.GetOverview(k)
                data = check(src.GetDataset().ReadRaster)
                check_status(level.WriteRaster, window.x >> (k + 1), window.y >> (k + 1),
                             src.XSize, src.YSize, data)
        finally:
            ds = None
            gdal.Unlink(path)

    def flush(self):
        for level in self.levels:
            writer.flush(level, self.inner.path)
        self.inner.flush()

    def close(self):
        self.levels = []
        return self.inner.close()

    def close_checked(self):
        self.levels = []
        self.inner.close_checked()

    def damaged(self):
        return self.inner.damaged()


def _at_origin(window):
    return type(window)(window.index, 0, 0, window.w, window.h)


def remove_temporary(partial):
    """Delete the copy :func:`finish` computes levels in (left by a killed run), if any."""
    writer._remove(partial + LEVELS_SUFFIX)


def finish(path, plan, progress=None, cancel=None):
    """Compute the levels after the streamed ones in the closed partial at ``path``.

    As GDAL's BuildOverviews computes them from the whole mosaic: on the partial
    itself when none is streamed, else on a copy of the last streamed level (a
    temporary file beside it), whose levels are then copied in.
    """
    levels = factors(plan)
    first = streamed(plan)
    if first >= len(levels):
        return
    callback = writer._callback(progress, cancel)
    resampling = bandmeta.overview_resampling(plan.band_meta)
    box, temp = [writer.reopen(path, plan)], path + LEVELS_SUFFIX
    try:
        with writer._signals_deferred(callback):
            if first == 0:
                check_status(box[0].BuildOverviews, resampling, levels, callback)
            else:
                _from_level(box, temp, plan, first, levels, resampling, callback)
            check_status(box[0].FlushCache)
        writer.close_checked(box)
    except GdalFailure as exc:
        writer.close(box)
        if cancel and cancel():
            raise
        raise writer.output_error(path, exc, "computing the overviews failed") from None
    finally:
        writer._remove(temp)


def _from_level(box, temp, plan, first, levels, resampling, callback):
    """Levels ``first..`` of ``box[0]`` computed from a copy of level ``first - 1``."""
    source = box[0].GetRasterBand(1).GetOverview(first - 1).GetDataset()
    co = [f"{k}={v}" for k, v in partial_options(plan).items() if k != "SPARSE_OK"]
    copy = [check(gdal.GetDriverByName("GTiff").CreateCopy, temp, source, 0, co)]
    try:
        check_status(copy[0].BuildOverviews, resampling,
                     [f // 2 ** first for f in levels[first:]], callback)
        band = copy[0].GetRasterBand(1)
        for k in range(first, len(levels)):
            src = band.GetOverview(k - first).GetDataset()
            dst = box[0].GetRasterBand(1).GetOverview(k).GetDataset()
            for y in range(0, src.RasterYSize, plan.block):
                h = min(plan.block, src.RasterYSize - y)
                check_status(dst.WriteRaster, 0, y, src.RasterXSize, h,
                             check(src.ReadRaster, 0, y, src.RasterXSize, h))
    finally:
        writer.close(copy)
