"""OVERVIEWS=true on a plain GeoTIFF: overview levels streamed into a side file.

The partial is the compressed output itself, so its overview tiles cannot be
filled window by window (a tile of level 3 spans several windows: it would be
compressed and rewritten each time). The levels that halve the one above
exactly (see :func:`.pyramid.exact_levels`) are filled as each window is
written, by GDAL's own overview code on the window (:class:`.pyramid.Sink`),
into ``OUTPUT.partial.pyramid``: an uncompressed GeoTIFF whose image is level 1
and whose overviews are the next levels. It is flushed with the partial at each
checkpoint, so RESUME continues it. At the end the partial gets its (empty)
overview levels, the streamed ones are copied in, compressed once, and GDAL
computes the rest level by level from the last one (the cascade of its
BuildOverviews: the same pixels). The full resolution is never read again,
except when the width or height is odd (no level is streamed: GDAL's
BuildOverviews on the partial, as before).
"""

from osgeo import gdal

from . import bandmeta, pyramid, writer
from .gdalenv import GdalFailure, check, check_status
from .options import parse_dask

SUFFIX = ".pyramid"


def streams(plan):
    """True when OVERVIEWS=true levels may be streamed (``plan``: a Plan or Options)."""
    options = getattr(plan, "options", plan)
    return (bool(options.overviews) and not options.cog
            and parse_dask(options.dask_scheduler)[0] is None)


def side_path(partial):
    return partial + SUFFIX


def factors(plan):
    """The overview factors (as GDAL's BuildOverviews: an odd level rounded up)."""
    return writer.overview_factors(plan.grid.width, plan.grid.height, plan.block)


def streamed(plan):
    """How many of the first levels are streamed into the side file."""
    return pyramid.exact_levels(plan, len(factors(plan))) if streams(plan) else 0


def layout(plan):
    """What the journal records of the side file (None: there is none)."""
    count = streamed(plan)
    return {"side": factors(plan), "streamed": count} if count else None


def prepare(partial, plan):
    """Create the side file of a new partial, its levels empty (when any is streamed)."""
    count = streamed(plan)
    if not count:
        return
    path = side_path(partial)
    co = [f"{k}={v}" for k, v in pyramid.intermediate_options(plan).items()]
    box = [check(gdal.GetDriverByName("GTiff").Create, path, plan.grid.width // 2,
                 plan.grid.height // 2, plan.out_bands, writer.gdal_type(plan.out_dtype), co)]
    if plan.nodata_out is not None:
        for b in range(1, plan.band_count + 1):
            box[0].GetRasterBand(b).SetNoDataValue(plan.nodata_out)
    if plan.out_bands > plan.band_count:
        box[0].GetRasterBand(plan.out_bands).SetColorInterpretation(gdal.GCI_AlphaBand)
    if count > 1:
        check_status(box[0].BuildOverviews, "NONE", [2 ** k for k in range(1, count)])
    writer.flush(box[0], path)
    writer.close_checked(box)


def sink(inner, partial, plan):
    """``inner`` wrapped so each window also fills its levels in the side file."""
    count = streamed(plan)
    if not count:
        return inner
    holder = [writer.open_update(side_path(partial), plan.creation_options.get("NUM_THREADS"))]
    band = holder[0].GetRasterBand(1)
    levels = [holder[0]] + [band.GetOverview(k).GetDataset() for k in range(count - 1)]
    return pyramid.Sink(inner, None, plan, levels, holder)


def finish(path, plan, progress=None, cancel=None):
    """Give the closed partial at ``path`` its overviews: the streamed levels copied
    from the side file, the others computed from the last of them."""
    count = streamed(plan)
    if not count:
        return writer.build_overviews(path, plan, progress, cancel)
    levels = factors(plan)
    callback = writer.progress_callback(progress, cancel)
    box, side = [writer.reopen(path, plan)], []
    try:
        side.append(check(gdal.OpenEx, side_path(path), gdal.OF_RASTER | gdal.OF_READONLY))
        with writer.signals_deferred(callback):
            check_status(box[0].BuildOverviews, "NONE", levels)
            _copy_levels(side[0], box[0], count, plan.block)
            _cascade(box[0], count, len(levels), plan, callback)
            check_status(box[0].FlushCache)
        writer.close(side)
        writer.close_checked(box)
    except GdalFailure as exc:
        writer.close(side)
        writer.close(box)
        if cancel and cancel():
            raise
        raise writer.output_error(path, exc, "building overviews failed") from None
    return levels


def _copy_levels(side, ds, count, rows):
    """Copy the side file's ``count`` levels into ``ds``'s first overviews, a row of
    tiles at a time (each tile compressed once)."""
    band = side.GetRasterBand(1)
    for k in range(count):
        src = side if k == 0 else band.GetOverview(k - 1).GetDataset()
        dst = ds.GetRasterBand(1).GetOverview(k).GetDataset()
        for y in range(0, src.RasterYSize, rows):
            h = min(rows, src.RasterYSize - y)
            check_status(dst.WriteRaster, 0, y, src.RasterXSize, h,
                         check(src.ReadRaster, 0, y, src.RasterXSize, h))


def _cascade(ds, first, total, plan, callback):
    """Levels ``first..total-1`` of ``ds``, each from the one above, band by band."""
    resampling = bandmeta.overview_resampling(plan.band_meta)
    progress, steps = callback.progress, plan.out_bands * (total - first)
    for b in range(1, plan.out_bands + 1):
        band = ds.GetRasterBand(b)
        for k in range(first, total):
            done = (b - 1) * (total - first) + k - first
            if progress:
                callback.progress = lambda f, done=done: progress((done + f) / steps)
            check_status(gdal.RegenerateOverview, band.GetOverview(k - 1), band.GetOverview(k),
                         resampling, callback)
    callback.progress = progress
