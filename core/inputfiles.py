"""Which files an input really reads, and a cheap fingerprint of each.

A checkpoint may only be resumed while every byte its durable windows were
made from is unchanged. A plain GeoTIFF is one file, but an input can read
others: a VRT reads its sources (and nested VRTs theirs), a subdataset such as
``NETCDF:"f.nc":var`` reads its container file, a ``/vsizip/`` member its
archive. Each file is fingerprinted as ``(absolute name, size, mtime_ns, etag)``:
size and modification time from one ``stat`` (``VSIStatL`` for ``/vsi`` paths,
whose times have one-second resolution), plus the ETag header for objects on
a server (``/vsicurl/``, ``/vsis3/`` ...) that sends one. A file that cannot
be stat'ed gets size -1.

Plain local GeoTIFFs (the 10,000-tile case) cost one ``stat``: GDAL's own file
list would probe some 40 side-car names per file.
"""

import os

from osgeo import gdal

from .gdalenv import NETWORK, NETWORK_READDIR, GdalFailure, open_readonly, readdir_config

ARCHIVES = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")
ARCHIVE_EXTENSIONS = (".zip", ".kmz", ".tar", ".tgz", ".tar.gz", ".gz", ".7z", ".rar")

# Nested VRTs followed at most this deep (a VRT may name itself).
MAX_DEPTH = 16


def files_read(path, ds, etag=None):
    """Fingerprints of every file the open dataset ``ds`` (opened from ``path``) reads.

    Parameters
    ----------
    path : str
        The name the input was opened with.
    ds : gdal.Dataset
        The open input.
    etag : str, optional
        The input's ETag when already known (:func:`.storage.check_input`): a network
        input is then not asked again.

    Returns
    -------
    tuple of (str, int, int, str)
        ``(absolute name, size, mtime_ns, etag)`` per file, the input's own file first.
    """
    driver = ds.GetDriver().ShortName if ds.GetDriver() is not None else ""
    if driver in ("GTiff", "COG") and not path.startswith("/vsi"):
        own = stat(absolute(path))
        if own[1] >= 0:  # a plain file (else e.g. GTIFF_DIR:2:f.tif)
            return (own,)
    if driver in ("GTiff", "COG") and readdir_config(path) == NETWORK_READDIR:
        # No side-car was looked for beside this object; GetFileList would still ask
        # the server for some (GDAL 3.13: .vat.dbf), one request each.
        return (stat(path, etag),)
    seen = {}
    known = {} if etag is None else {absolute(path): etag}
    _collect(_listed(path, ds), seen, {absolute(path)}, 0, known)
    return tuple(seen.values())


def _listed(path, ds):
    names = list(ds.GetFileList() or [])
    if not names:
        container = _subdataset_file(path)
        names = [container] if container else [path]
    return names


def _collect(names, seen, expanded, depth, known=None):
    for name in names:
        name = absolute(name)
        if name in seen:
            continue
        seen[name] = stat(name, (known or {}).get(name))
        container = _archive(name)
        if container:
            _collect([container], seen, expanded, depth, known)
        if name.lower().endswith(".vrt") and name not in expanded and depth < MAX_DEPTH:
            expanded.add(name)
            try:
                nested = open_readonly(name)
            except GdalFailure:
                continue  # the run reports an unreadable source when it reads it
            _collect(_listed(name, nested), seen, expanded, depth + 1, known)
            nested = None


def absolute(name):
    """``name`` with a local relative file (also inside ``/vsizip/`` etc.) made absolute."""
    for prefix in ARCHIVES:
        if name.startswith(prefix):
            inner = name[len(prefix):]
            if inner and not inner.startswith(("/", "{")):
                return prefix + os.path.abspath(inner)
            return name
    return name if name.startswith("/vsi") else os.path.abspath(name)


def stat(name, etag=None):
    """``(name, size, mtime_ns, etag)`` of one file; size -1 when it cannot be stat'ed.
    ``etag``: the file's ETag when already known."""
    if not name.startswith("/vsi"):
        try:
            st = os.stat(name)
        except OSError:
            return (name, -1, 0, "")
        return (name, st.st_size, st.st_mtime_ns, "")
    st = gdal.VSIStatL(name)
    if st is None:
        return (name, -1, 0, "")
    return (name, st.size, int(st.mtime) * 10**9, _etag(name) if etag is None else etag)


def _etag(name):
    if not name.startswith(NETWORK):
        return ""
    try:
        headers = gdal.GetFileMetadata(name, "HEADERS") or {}
    except RuntimeError:
        return ""
    return etag_of(headers)


def etag_of(headers):
    """The ETag among HTTP ``headers`` (a dict), or ""."""
    for key, value in headers.items():
        if key.lower() == "etag":
            return value
    return ""


def _archive(name):
    """The archive file a ``/vsizip/``-style name reads from, or None."""
    for prefix in ARCHIVES:
        if name.startswith(prefix):
            inner = name[len(prefix):]
            if inner.startswith("{"):
                return inner[1:inner.index("}")] if "}" in inner else None
            lower = inner.lower()
            for end in range(len(inner)):
                if inner[end] == "/" and lower[:end].endswith(ARCHIVE_EXTENSIONS):
                    return inner[:end]
            return inner
    return None


def _subdataset_file(path):
    """The container of a ``DRIVER:"file":name`` or ``DRIVER:file:name`` subdataset, or None."""
    head, sep, rest = path.partition(":")
    if not sep or not head.replace("_", "").isalnum() or len(head) < 2:
        return None
    if rest.startswith('"'):
        end = rest.find('"', 1)
        return rest[1:end] if end > 0 else None
    candidate = rest.partition(":")[0]
    return candidate or None
