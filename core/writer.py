"""The output side: checking OUTPUT, the partial GeoTIFF, overviews, COG and the final rename.

The mosaic is written to ``OUTPUT.partial`` (a tiled, compressed GeoTIFF) and
renamed to OUTPUT only when complete, so a failed or cancelled run never leaves
a file under the requested name. For COG output the finished partial is copied
by GDAL's COG driver to ``OUTPUT.cog.partial`` (:mod:`.cog`) and that file is renamed.
"""

import contextlib
import errno
import math
import os
import signal
import sys
import threading

import numpy as np
from osgeo import gdal, gdal_array

from . import bandmeta, storage
from .errors import OptionError, OutputError
from .gdalenv import GdalFailure, check, check_status
from .options import flag

try:
    import resource
except ImportError:  # Windows
    resource = None

EXTENSIONS = (".tif", ".tiff")


def check_output(output, inputs):
    """Validate OUTPUT and return it as an absolute path.

    Raises
    ------
    OptionError
        Wrong extension, or OUTPUT is one of the inputs.
    OutputError
        The folder does not exist or is not writable, or OUTPUT is a folder.
    """
    if not output:
        raise OptionError(flag("output"), "no output file given")
    output = storage.gdal_path(str(output))
    if storage.is_remote_output(output):
        return _check_remote(output, inputs)
    output = os.path.abspath(output)
    if not output.lower().endswith(EXTENSIONS):
        raise OptionError(flag("output"), f"{output} must end in .tif or .tiff: the output is "
                          "always a GeoTIFF")
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise OutputError(output, f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(output, f"the folder {folder} is not writable")
    if os.path.isdir(output):
        raise OutputError(output, "is a folder")
    for path in inputs or ():
        path = str(path)
        if os.path.exists(path) and os.path.exists(output) and os.path.samefile(path, output) \
                or os.path.abspath(path) == output:
            raise OptionError(flag("output"), f"{output} is also an input; choose another file")
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise OutputError(output, "exists and cannot be replaced (read-only)")
    return output


def _check_remote(output, inputs):
    if not output.lower().endswith(EXTENSIONS):
        raise OptionError(flag("output"), f"{output} must end in .tif or .tiff: the output is "
                          "always a GeoTIFF")
    if output in storage.expand_inputs(inputs):
        raise OptionError(flag("output"), f"{output} is also an input; choose another key")
    storage.check_output(output)
    return output


def gdal_type(dtype):
    """GDAL data type code for a numpy dtype (int8 is Byte + PIXELTYPE=SIGNEDBYTE on GDAL < 3.7)."""
    dtype = np.dtype(dtype)
    if dtype == np.int8:
        return getattr(gdal, "GDT_Int8", gdal.GDT_Byte)
    return gdal_array.NumericTypeCodeToGDALTypeCode(dtype.type)


def create(path, plan, extra=(), options=None):
    """Create the partial GeoTIFF for ``plan`` (replacing any old one); ``extra``:
    creation options added to the plan's (not part of the job, e.g. SPARSE_OK);
    ``options``: the creation options instead of the plan's (a dict)."""
    grid = plan.grid
    options = plan.creation_options if options is None else options
    co = [f"{k}={v}" for k, v in options.items()] + list(extra)
    driver = gdal.GetDriverByName("GTiff")
    try:
        ds = check(driver.Create, path, grid.width, grid.height, plan.out_bands,
                   gdal_type(plan.out_dtype), co)
    except GdalFailure as exc:
        raise output_error(path, exc, "cannot be created") from None
    ds.SetGeoTransform(grid.geotransform)
    if grid.crs_wkt:
        ds.SetProjection(grid.crs_wkt)
    if plan.nodata_out is not None:
        for b in range(1, plan.band_count + 1):
            ds.GetRasterBand(b).SetNoDataValue(plan.nodata_out)
    bandmeta.apply(ds, plan.band_meta)
    if plan.out_bands > plan.band_count:  # ADD_ALPHA (with the ALPHA=YES creation option)
        ds.GetRasterBand(plan.out_bands).SetColorInterpretation(gdal.GCI_AlphaBand)
    return ds


def sparse(plan):
    """True when the creation options ask for a sparse file (SPARSE_OK)."""
    value = plan.creation_options.get("SPARSE_OK", "")
    return str(value).strip().upper() in ("TRUE", "YES", "ON", "1")


def unwritten(plan, array):
    """True when ``array`` is what a never-written block of the output reads as
    (nodata, or 0 without one), so a sparse output can leave it out."""
    fill = 0 if plan.nodata_out is None else plan.nodata_out
    if math.isnan(fill):
        return bool(np.isnan(array).all())
    return not np.any(array != array.dtype.type(fill))


def open_update(path, threads=None, sparse_ok=False):
    """Reopen a partial GeoTIFF to write into it.

    NUM_THREADS and SPARSE_OK are creation options, so they are lost on reopening:
    they are given again as open options, or every tile would be compressed by
    the writer thread alone (measured: 4.7 s instead of 3.6 s for a 74 Mpix LZW
    mosaic), and empty tiles written.
    """
    options = [f"NUM_THREADS={threads}"] if threads else []
    if sparse_ok:
        options.append("SPARSE_OK=TRUE")
    try:
        return check(gdal.OpenEx, path, gdal.OF_RASTER | gdal.OF_UPDATE, ["GTiff"], options)
    except GdalFailure as exc:
        raise OutputError(path, f"the partial output cannot be reopened ({exc}); "
                          "run without RESUME to start over") from None


def reopen(path, plan):
    """:func:`open_update` with the plan's compression threads."""
    return open_update(path, plan.creation_options.get("NUM_THREADS"), sparse(plan))


def write_window(ds, path, window, array):
    """Write one finished window (bands, h, w) at its place."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.int8 and not hasattr(gdal, "GDT_Int8"):
        array = array.view(np.uint8)
    try:
        check_status(ds.WriteRaster, window.x, window.y, window.w, window.h, array,
                     buf_type=gdal_type(array.dtype), band_list=list(range(1, array.shape[0] + 1)))
    except GdalFailure as exc:
        raise output_error(path, exc, f"writing window {window.index + 1} failed") from None


def flush(ds, path):
    """Push every cached block of ``ds`` to the file (raises OutputError on failure)."""
    try:
        check_status(ds.FlushCache)
        # GDAL 3.6 writes the last block's data but not its TileOffsets entry in the
        # first flush; the second writes the directory, so the file on disk holds
        # every window written so far (what the resume journal then claims).
        check_status(ds.FlushCache)
    except GdalFailure as exc:
        raise output_error(path, exc, "flushing the output failed") from None


def damaged_blocks(path):
    """Name the first block of a closed partial GeoTIFF that overlaps another block
    (as an uncompressed file closed after a failed write can have), or return None.

    GDAL rewrites an existing block in place when the new data fits, so resuming
    into such a file would write windows over each other. Blocks cut short by or
    lying past the end of the file are fine: they are not durable yet and are
    written again on resume.
    """
    try:
        ds = check(gdal.OpenEx, path, gdal.OF_RASTER | gdal.OF_READONLY, ["GTiff"])
    except GdalFailure:
        return "the file cannot be opened"
    separate = ds.GetMetadataItem("INTERLEAVE", "IMAGE_STRUCTURE") == "BAND"
    bx, by = ds.GetRasterBand(1).GetBlockSize()
    regions = []
    for b in range(1, ds.RasterCount + 1 if separate else 2):
        band = ds.GetRasterBand(b)
        for y in range(-(-ds.RasterYSize // by)):
            for x in range(-(-ds.RasterXSize // bx)):
                offset = int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF") or 0)
                count = int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF") or 0)
                if offset and count:
                    regions.append((offset, count, f"block {x},{y} of band {b}"))
    end = 0
    for offset, count, name in sorted(regions):
        if offset < end:
            return name
        end = max(end, offset + count)
    return None


MB = 2**20


def output_error(path, exc, what, needed=MB):
    """An OutputError for a failed GDAL write, saying so when the disk is full.

    GDAL's message rarely says so ("TIFFAppendToStrip:Seek error"): the disk
    counts as full when less than ``needed`` bytes are free, and the file size
    limit (``ulimit -f``) as reached when the file plus ``needed`` exceeds it.
    Call this before deleting what the failed write left.
    """
    text = str(exc)
    if "No space left" in text or "ENOSPC" in text:
        return OutputError(path, f"{what}: no space left on the device")
    room = _no_room(path, needed)
    if room:
        return OutputError(path, f"{what}: {room}")
    return OutputError(path, f"{what} ({text})")


def _no_room(path, needed):
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None and free < needed:
        return (f"no space left on the device ({free / MB:,.1f} MB free, about "
                f"{needed / MB:,.0f} MB needed)" if needed > MB else "no space left on the device")
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if limit != resource.RLIM_INFINITY and max(size + MB, needed) > limit:
        return f"the file size limit (ulimit -f) of {limit / MB:,.1f} MB was reached"
    return None


def overview_factors(width, height, block):
    """Overview decimation factors: halve until the smallest level fits in one block."""
    factors = []
    factor = 1
    while math.ceil(width / factor) > block or math.ceil(height / factor) > block:
        factor *= 2
        factors.append(factor)
    return factors


def progress_callback(progress, cancel):
    def callback(complete, _message, _data):
        if callback.progress:
            callback.progress(complete)
        return 0 if callback.interrupted or (cancel and cancel()) else 1
    callback.interrupted = False
    callback.progress = progress
    return callback


@contextlib.contextmanager
def signals_deferred(callback):
    """Let Ctrl-C / SIGTERM stop a long GDAL call through its progress callback.

    GDAL's bindings print and drop an exception raised in a callback (a
    KeyboardInterrupt there became a traceback and a "failed" error), so while
    the call runs the main thread's Python signal handlers only record the
    signal; the original handler runs (and raises) when the call is over.
    """
    saved, caught = {}, []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if callable(handler):
                saved[signum] = handler
                signal.signal(signum, lambda *sig: (caught.append(sig),
                                                    setattr(callback, "interrupted", True)))
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        if caught:
            saved[caught[0][0]](*caught[0])


def close(box):
    """Close the dataset held in ``box`` (a one-item list); return GDAL's close errors.

    Closing writes what is still cached, so it can fail. With the bindings in
    exception mode the error is raised from a destructor, which Python would
    print as "Exception ignored in ..."; here it is collected instead, in both
    modes, and the caller decides.
    """
    errors = []
    if not box:
        return errors
    previous = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError):
            errors.append(str(unraisable.exc_value))
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    gdal.ErrorReset()
    try:
        ds = box.pop()
        try:
            # Dropping the last reference closes it. Not Close(): on GDAL 3.10 the
            # dataset object crashes the process when it is freed after a failed
            # Close(). Newer bindings raise the closing error here, older ones
            # from the destructor (the hook above).
            del ds
        except RuntimeError as exc:
            errors.append(str(exc))
    finally:
        sys.unraisablehook = previous
    if not errors and gdal.GetLastErrorType() >= gdal.CE_Failure:
        errors.append(gdal.GetLastErrorMsg())
    return errors


def close_checked(box):
    """:func:`close`, raising :class:`GdalFailure` with the first closing error."""
    errors = close(box)
    if errors:
        raise GdalFailure(errors[0])


def build_overviews(path, plan, progress=None, cancel=None):
    """Build internal overviews in the (closed) GeoTIFF at ``path`` (AVERAGE, NEAREST
    for a paletted output)."""
    factors = overview_factors(plan.grid.width, plan.grid.height, plan.block)
    if not factors:
        return []
    box = [reopen(path, plan)]
    callback = progress_callback(progress, cancel)
    try:
        with signals_deferred(callback):
            check_status(box[0].BuildOverviews, bandmeta.overview_resampling(plan.band_meta),
                         factors, callback)
            check_status(box[0].FlushCache)
        close_checked(box)
    except GdalFailure as exc:
        close(box)
        if cancel and cancel():
            raise
        raise output_error(path, exc, "building overviews failed") from None
    return factors


def remove_file(path):
    try:
        os.remove(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def publish(src, output):
    """Move the finished file into place atomically: a rename, or for an output in
    object storage one upload (``src`` stays; Ctrl-C waits for the upload to end)."""
    if storage.is_remote_output(output):
        with signals_deferred(progress_callback(None, None)):
            storage.upload(src, output)
        return
    try:
        os.replace(src, output)
    except OSError as exc:
        raise OutputError(output, f"cannot move the finished mosaic into place ({exc})") from None
