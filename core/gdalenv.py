"""GDAL state a run changes, and how it is given back.

GDAL has process-wide state (the block cache size, the Python bindings'
exception mode) and per-thread state (config options set with
``SetThreadLocalConfigOption``, the error handler stack). QGIS runs Processing
algorithms in background threads of one process, so a run must change as little
process-wide state as possible and restore all of it, even on error:

* the block cache limit is shared: :func:`cache_budget` sets it to the sum of
  the budgets of the runs active in the process and restores the original value
  when the last one ends;
* everything else (a quiet error handler so GDAL prints nothing, config
  options a step needs) is set per thread by :func:`thread_env`, in every
  thread that touches GDAL for the run;
* inputs are opened read-only and nothing that dirties GDAL's PAM (statistics,
  metadata) is ever called on them, so no ``.aux.xml`` appears beside them
  while the sidecar files they rely on (``.aux.xml`` nodata, ``.msk``, world
  files) are still honoured;
* the exception mode of the bindings is never changed: :func:`check` works in
  both modes.
"""

import contextlib
import ctypes
import itertools
import sys
import threading

from osgeo import gdal

from .errors import GdalFailure  # noqa: F401 (raised here, imported from here by the core)

_cache_lock = threading.Lock()
_cache_users = {}
_cache_saved = [None]
_tokens = itertools.count()


@contextlib.contextmanager
def cache_budget(nbytes):
    """Limit GDAL's block cache while the block runs, restoring it afterwards.

    The cache limit is process-wide. Concurrent runs in one process each
    register their budget; the limit is the sum of the active budgets, and the
    value found before the first run is restored when the last run ends.
    """
    token = next(_tokens)
    with _cache_lock:
        if not _cache_users:
            _cache_saved[0] = gdal.GetCacheMax()
        _cache_users[token] = int(nbytes)
        gdal.SetCacheMax(sum(_cache_users.values()))
    try:
        yield
    finally:
        with _cache_lock:
            del _cache_users[token]
            if _cache_users:
                gdal.SetCacheMax(sum(_cache_users.values()))
            else:
                gdal.SetCacheMax(_cache_saved[0])


@contextlib.contextmanager
def thread_config(config):
    """Set GDAL config options for this thread only, restoring them on exit."""
    saved = {key: gdal.GetThreadLocalConfigOption(key, None) for key in config}
    for key, value in config.items():
        gdal.SetThreadLocalConfigOption(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            gdal.SetThreadLocalConfigOption(key, value)


@contextlib.contextmanager
def thread_env():
    """Apply the run's GDAL config options and a quiet error handler to this thread.

    Both are thread-local in GDAL, so this must be entered in every thread that
    calls GDAL for the run; the previous values are restored on exit.
    """
    config = dict(NO_READDIR, **{k: v for k, v in HTTP_RETRY.items()
                                 if gdal.GetConfigOption(k) is None})
    with thread_config(dict(config, **STRICT_READS)):
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            yield
        finally:
            gdal.PopErrorHandler()


def check(func, *args, **kwargs):
    """Call a GDAL function returning an object; turn failure into :class:`GdalFailure`.

    Works whether or not the bindings raise exceptions (``gdal.UseExceptions``
    is process-wide, so the core never changes it): a ``RuntimeError`` or a
    ``None`` result counts as failure.
    """
    gdal.ErrorReset()
    try:
        result = func(*args, **kwargs)
    except RuntimeError as exc:
        raise GdalFailure(str(exc) or last_error()) from None
    if result is None:
        raise GdalFailure(last_error() or "GDAL call failed")
    return result


def check_status(func, *args, **kwargs):
    """Call a GDAL function returning a CPLErr (or None in older bindings).

    Failure is a ``RuntimeError``, a non-zero status, or an error of level
    CE_Failure or worse raised during the call.
    """
    gdal.ErrorReset()
    try:
        result = func(*args, **kwargs)
    except RuntimeError as exc:
        raise GdalFailure(str(exc) or last_error()) from None
    failed = isinstance(result, int) and not isinstance(result, bool) and result != 0
    if failed or gdal.GetLastErrorType() >= gdal.CE_Failure:
        raise GdalFailure(last_error() or "GDAL call failed")
    return result


def last_error():
    """GDAL's last error message in this thread, or an empty string."""
    return (gdal.GetLastErrorMsg() or "").strip()


# GDAL lists an input's folder on every open to find side-car files; in a folder of
# 10,000 tiles that is quadratic (3,000 opens: 5.4 s, 1.3 s with stat() per side-car).
NO_READDIR = {"GDAL_DISABLE_READDIR_ON_OPEN": "YES"}

# Paths GDAL reads over the network. Beside them not even side-car names are probed (each
# costs a HEAD request, ~40 per open) unless the user sets GDAL_DISABLE_READDIR_ON_OPEN.
NETWORK = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/",
           "/vsiswift/", "/vsiwebhdfs/", "/vsihdfs/")
NETWORK_READDIR = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}

# Transient HTTP errors (429, 502-504) are retried by GDAL; these defaults apply only
# where the user set neither option (environment, --config, QGIS's GDAL settings).
HTTP_RETRY = {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1"}

# libjpeg only warns of a truncated or corrupt JPEG and fills the rest with grey:
# make that a read failure, never silently wrong pixels. (JPEG tiles inside a GeoTIFF
# go through libtiff, which this option does not reach.)
STRICT_READS = {"GDAL_ERROR_ON_LIBJPEG_WARNING": "YES"}


def open_readonly(path, driver=""):
    """Open a raster read-only, raising :class:`GdalFailure` with GDAL's message.

    Side-car files (.aux.xml, .msk, .ovr, world files) are still found, by stat(),
    except beside a network path (see :func:`readdir_config`). ``driver``: the one
    driver to try (a reopened input: GDAL then skips asking the others, ~13 us).
    """
    flags = gdal.OF_RASTER | gdal.OF_READONLY | gdal.OF_VERBOSE_ERROR
    drivers = {"allowed_drivers": [driver]} if driver else {}
    config = dict(readdir_config(path), **STRICT_READS)
    if all(gdal.GetThreadLocalConfigOption(k, None) == v for k, v in config.items()):
        return check(gdal.OpenEx, str(path), flags, **drivers)  # set already (thread_env)
    with thread_config(config):
        return check(gdal.OpenEx, str(path), flags, **drivers)


def readdir_config(path):
    """GDAL_DISABLE_READDIR_ON_OPEN for opening ``path``: YES (side-cars found by stat)
    for local files; for a network path EMPTY_DIR (no side-car requests) unless the user
    set the option."""
    if str(path).startswith(NETWORK):
        user = global_option("GDAL_DISABLE_READDIR_ON_OPEN")
        return {"GDAL_DISABLE_READDIR_ON_OPEN": user} if user else NETWORK_READDIR
    return NO_READDIR


def global_option(key):
    """A GDAL config option as the user set it (environment, --config, QGIS's settings),
    not as a run set it for this thread (:func:`thread_env`)."""
    mine = gdal.GetThreadLocalConfigOption(key, None)
    if mine is None:
        return gdal.GetConfigOption(key)
    gdal.SetThreadLocalConfigOption(key, None)
    try:
        return gdal.GetConfigOption(key)
    finally:
        gdal.SetThreadLocalConfigOption(key, mine)


def unlink_quiet(name):
    """Delete a /vsimem/ or real file, ignoring a missing one."""
    try:
        if gdal.VSIStatL(name) is not None:
            gdal.Unlink(name)
    except RuntimeError:
        pass


_libc = []
M_ARENA_MAX = -8  # glibc's mallopt parameter


def _glibc():
    """glibc through ctypes, or None (not Linux, or another C library)."""
    if not _libc:
        libc = None
        if sys.platform.startswith("linux"):
            try:
                # glibc's name: ctypes.util.find_library runs ldconfig in a child process.
                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            except (OSError, AttributeError):
                libc = None  # not glibc (musl, ...)
        _libc.append(libc)
    return _libc[0]


def one_malloc_arena():
    """Make every thread allocate from glibc's main arena; True when done.

    For a process that is ours alone (the CLI): never inside QGIS or a user's Python,
    where it would change how their threads allocate. GDAL's cache blocks are
    allocated by the thread that decodes or writes them and freed by whichever thread
    evicts them, so with an arena per thread each arena keeps freed blocks resident
    beside the live ones: on GDAL 3.6 (256 Mpix, 64 MB cache, 2 workers and 2
    compression threads) 25-70 MB above the plan, peaks 343-363 MB. With one arena
    they were 330-332 MB, in the same time and less system CPU.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, 1))


def release_free_memory():
    """Give memory freed by window buffers and GDAL blocks back to the system (glibc).

    Worker threads allocate window-sized buffers and GDAL cache blocks in their
    own malloc arenas, which fragment: without this, peak RSS crept up by ~60 MB
    over a 300-window run. ``malloc_trim`` every few windows keeps it flat for
    a few milliseconds (cheaper than serving every large block with mmap, which
    cost 6% of the run time in page faults). A no-op where glibc is absent.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def vrt_xml(ds):
    """The XML of a VRT dataset as text.

    GDAL hands back bytes when the XML holds text that is not UTF-8 (a source's
    CRS name written in Latin-1 by an old tool); read as Latin-1 it parses.
    """
    xml = ds.GetMetadata("xml:VRT")[0]
    return xml.decode("latin-1") if isinstance(xml, bytes) else xml
