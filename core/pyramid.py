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
whole mosaic only when its width or height is odd). The level sizes are the COG
driver's: halved and rounded down (537 px under 1075; GDAL's GeoTIFF overviews
round up), so those later levels live in temporary files beside the partial
(``OUTPUT.partial.levels.N``), which GDAL computes with the same cascade
(RegenerateOverviews), and a VRT gives the COG driver the partial with all its
levels. The COG driver then only compresses (OVERVIEWS=FORCE_USE_EXISTING).

The Dask executor appends tiles its workers compressed with the output's
options, so with DASK_SCHEDULER the partial stays compressed (:func:`streams`
is False): every level is computed at the end, from the full resolution.
"""

import glob
import itertools
import xml.etree.ElementTree as ET

from osgeo import gdal

from . import bandmeta, writer
from .cog import cog_block
from .gdalenv import GdalFailure, check, check_status, vrt_xml
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


def level_sizes(plan):
    """(width, height) of each overview level, as GDAL's COG driver chooses them:
    halved and rounded down until both fit in one of the COG's blocks."""
    limit = cog_block(plan)
    w, h = plan.grid.width, plan.grid.height
    sizes = []
    while w > limit or h > limit:
        w, h = max(w // 2, 1), max(h // 2, 1)
        sizes.append((w, h))
    return sizes


def factors(plan):
    """The overview decimation factors of the output (one per level of :func:`level_sizes`)."""
    return [2 ** (k + 1) for k in range(len(level_sizes(plan)))]


def streamed(plan):
    """How many of the first levels are filled window by window (see the module doc)."""
    return exact_levels(plan, len(factors(plan))) if streams(plan) else 0


def exact_levels(plan, most):
    """How many of the first ``most`` levels halve the one above exactly, windows included."""
    count = 0
    while count < most:
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
    return intermediate_options(plan) if streams(plan) else dict(plan.creation_options)


def intermediate_options(plan):
    """The output's layout options, uncompressed (the intermediate and the later levels)."""
    co = {k: v for k, v in plan.creation_options.items() if k.upper() in KEPT}
    co.update(INTERMEDIATE)
    return co


def layout(plan):
    """What the journal records of the partial's layout (None: the plan's options)."""
    if not streams(plan):
        return None
    return {"intermediate": INTERMEDIATE, "overviews": [list(x) for x in level_sizes(plan)],
            "streamed": streamed(plan)}


def partial_bytes(plan):
    """About the size of an uncompressed partial (with its overviews for :func:`streams`)."""
    w, h = plan.grid.width, plan.grid.height
    total = w * h + sum(x * y for x, y in (level_sizes(plan) if streams(plan) else []))
    return total * plan.raw_bytes // (w * h)


def prepare(ds, plan):
    """Create the empty streamed overview levels in a new partial ``ds``."""
    count = streamed(plan)
    if count:
        check_status(ds.BuildOverviews, "NONE", factors(plan)[:count])


class Sink:
    """Wraps an executor's sink: each window written also fills its overview pixels."""

    def __init__(self, inner, box, plan, levels=None, holder=None):
        """``levels``: the datasets of the streamed levels, else the overviews of
        ``box[0]``; ``holder``: a one-item list of the dataset they belong to, closed
        with the sink (see :mod:`.overviews`)."""
        self.inner, self.box, self.plan, self.holder = inner, box, plan, holder or []
        if levels is None:
            band = box[0].GetRasterBand(1)
            levels = [band.GetOverview(k).GetDataset() for k in range(streamed(plan))]
        self.levels, self.count = levels, len(levels)
        self.resampling = bandmeta.overview_resampling(plan.band_meta)

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
        errors = writer.close(self.holder)
        return (self.inner.close() or []) + errors

    def close_checked(self):
        self.levels = []
        writer.close_checked(self.holder)
        self.inner.close_checked()

    def damaged(self):
        return self.inner.damaged()


def _at_origin(window):
    return type(window)(window.index, 0, 0, window.w, window.h)


def remove_temporary(partial):
    """Delete the later levels and the VRT :func:`finish` made (left by a killed run), if any."""
    for path in glob.glob(glob.escape(partial + LEVELS_SUFFIX) + ".*"):
        writer.remove_file(path)


def finish(path, plan, progress=None, cancel=None):
    """Compute the levels after the streamed ones; return what the COG driver copies.

    As GDAL computes them from the whole mosaic (each level from the one above):
    from the last streamed level of the closed partial at ``path``, or from the
    full resolution when none is streamed, into temporary files beside it. The
    result is ``path`` itself when every level was streamed, else a VRT of it
    whose overviews are its streamed levels and those files.
    """
    sizes = level_sizes(plan)
    first = streamed(plan)
    if first >= len(sizes):
        return path
    callback = writer.progress_callback(progress, cancel)
    tails = [f"{path}{LEVELS_SUFFIX}.{k + 1}" for k in range(first, len(sizes))]
    box = [check(gdal.OpenEx, path, gdal.OF_RASTER | gdal.OF_READONLY, ["GTiff"])]
    made = []
    try:
        with writer.signals_deferred(callback):
            made.extend(_create_level(name, size, plan) for name, size in
                        zip(tails, sizes[first:]))
            _regenerate(box[0], first, made, plan, callback)
        for ds in made:
            check_status(ds.FlushCache)
        while made:
            writer.close_checked([made.pop()])
        return _with_levels(path, plan, first, tails)
    except GdalFailure as exc:
        while made:
            writer.close([made.pop()])
        if cancel and cancel():
            raise
        raise writer.output_error(path, exc, "computing the overviews failed",
                                  plan.raw_bytes // 3) from None
    finally:
        writer.close(box)


def _create_level(name, size, plan):
    co = [f"{k}={v}" for k, v in intermediate_options(plan).items() if k != "SPARSE_OK"]
    ds = check(gdal.GetDriverByName("GTiff").Create, name, size[0], size[1], plan.out_bands,
               writer.gdal_type(plan.out_dtype), co)
    for b in range(1, plan.band_count + 1 if plan.nodata_out is not None else 1):
        ds.GetRasterBand(b).SetNoDataValue(plan.nodata_out)
    if plan.out_bands > plan.band_count:
        ds.GetRasterBand(plan.out_bands).SetColorInterpretation(gdal.GCI_AlphaBand)
    return ds


def _regenerate(src, first, made, plan, callback):
    """GDAL's overview code, band by band, each level from the one above (as the COG
    driver cascades, NEAREST included), from level ``first`` (0: full resolution)."""
    resampling = bandmeta.overview_resampling(plan.band_meta)
    progress = callback.progress
    steps = plan.out_bands * len(made)
    for b in range(1, plan.out_bands + 1):
        band = src.GetRasterBand(b)
        band = band.GetOverview(first - 1) if first else band
        for k, ds in enumerate(made):
            done = (b - 1) * len(made) + k
            if progress:
                callback.progress = lambda f, done=done: progress((done + f) / steps)
            target = ds.GetRasterBand(b)
            check_status(gdal.RegenerateOverview, band, target, resampling, callback)
            band = target
    callback.progress = progress


def _with_levels(path, plan, first, tails):
    """A VRT of the partial at ``path`` whose overviews are its ``first`` levels
    (``GTIFF_DIR``: its images after the first) followed by the ``tails`` files."""
    vrt = f"{path}{LEVELS_SUFFIX}.vrt"
    check(gdal.Translate, vrt, path, format="VRT")
    root = ET.fromstring(vrt_xml(check(gdal.Open, vrt)))
    sources = [f"GTIFF_DIR:{k + 2}:{path}" for k in range(first)] + tails
    for band in root.iter("VRTRasterBand"):
        for name in sources:
            over = ET.SubElement(band, "Overview")
            ET.SubElement(over, "SourceFilename", relativeToVRT="0").text = name
            ET.SubElement(over, "SourceBand").text = band.get("band")
    with open(vrt, "w", encoding="utf-8") as fh:
        fh.write(ET.tostring(root, encoding="unicode"))
    return vrt
