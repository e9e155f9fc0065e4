"""Where bytes live: local paths, /vsi paths and s3:// URLs; local partial + upload;
fingerprints via VSIStatL (see :mod:`.inputfiles`).

Inputs may be any path GDAL opens. ``http(s)://``, ``s3://``, ``gs://`` and
``az://`` URLs become GDAL's ``/vsicurl/``, ``/vsis3/``, ``/vsigs/`` and
``/vsiaz/`` paths (read with range requests, never downloaded whole), and
``@list.txt`` stands for the inputs listed in that file, one a line.

An OUTPUT in object storage (``/vsis3/bucket/key.tif``, ``/vsigs/``,
``/vsiaz/``...) is written as a local partial with its checkpoint and lock in
a work folder (WORK_FOLDER, default the system temp folder), under a sub-folder
named after the output URL so RESUME finds it again; the finished file is
uploaded once. S3 shows an object only when its upload completes, so the key
never holds an incomplete mosaic and a failed run leaves it as it was.

Credentials are GDAL's own (environment, ``~/.aws``, GDAL config options).
"""

import math
import os
import re

from osgeo import gdal

from .errors import InputError, OptionError, OutputError
from .gdalenv import GdalFailure, check_status, thread_config
from .inputfiles import NETWORK, etag_of
from .options import flag

SCHEMES = (("s3://", "/vsis3/"), ("gs://", "/vsigs/"), ("az://", "/vsiaz/"),
           ("http://", "/vsicurl/http://"), ("https://", "/vsicurl/https://"))
WRITABLE = ("/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/", "/vsiswift/")

# GDAL's HTTP block cache (CPL_VSIL_CURL_CACHE_SIZE) when the user has not set it.
CURL_CACHE_DEFAULT = 16 * 2**20
MB = 2**20
UPLOAD_BLOCK = MB  # bytes copied per write while uploading
MIN_PART_MB = 8    # S3 multipart parts: at least 5 MB, at most 10,000 parts


def gdal_path(text):
    """``text`` with an ``s3://``, ``gs://``, ``az://`` or ``http(s)://`` URL turned into
    GDAL's ``/vsi`` form; anything else unchanged."""
    text = os.fspath(text)
    for scheme, vsi in SCHEMES:
        if text[:len(scheme)].lower() == scheme:
            return vsi + text[len(scheme):]
    return text


def is_network(path):
    """True for a path GDAL reads over the network."""
    return str(path).startswith(NETWORK)


def is_remote_output(path):
    """True for an output written to object storage."""
    return gdal_path(str(path)).startswith(WRITABLE)


def expand_inputs(items):
    """The inputs as GDAL paths: URLs converted, ``@list.txt`` replaced by its lines.

    Raises
    ------
    OptionError
        When a list file cannot be read or lists nothing.
    """
    paths = []
    for item in items or ():
        text = os.fspath(item) if not isinstance(item, str) else item
        if text.startswith("@") and len(text) > 1 and not os.path.exists(text):
            paths.extend(read_list(text[1:]))
        else:
            paths.append(gdal_path(text))
    return paths


def read_list(path):
    """The inputs listed in a text file: one a line, blank lines and ``#`` comments
    ignored, relative names taken from the list file's folder."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(flag("inputs"), f"cannot read the input list {path} "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    folder = os.path.dirname(os.path.abspath(path))
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = gdal_path(line)
        if not line.startswith("/vsi") and ":" not in line and not os.path.isabs(line):
            line = os.path.join(folder, line)
        paths.append(line)
    if not paths:
        raise OptionError(flag("inputs"), f"the input list {path} names no input")
    return paths


def remote_problem(path):
    """Why the network object ``path`` cannot be read (one phrase), or None when it can.

    One ``VSIStatL`` (a HEAD request, cached by GDAL for the open that follows).
    """
    found, message = _stat(path)
    if found:
        return None
    return _http_reason(message, path)


def _stat(path):
    """(exists, GDAL's error message) for ``path``.

    GDAL >= 3.10 reports nothing when the stat of a network object fails: an open
    that asks for errors then says why (connection refused, HTTP status).
    """
    gdal.ErrorReset()
    try:
        if gdal.VSIStatL(path) is not None:
            return True, ""
    except RuntimeError:
        pass
    message = gdal.GetLastErrorMsg() or ""
    if not message and hasattr(gdal, "VSIFOpenExL"):
        gdal.ErrorReset()
        try:
            handle = gdal.VSIFOpenExL(path, "rb", True)
        except RuntimeError as exc:
            handle, message = None, str(exc)
        if handle is not None:
            gdal.VSIFCloseL(handle)
        message = message or gdal.GetLastErrorMsg() or ""
    return False, message


def _http_reason(message, path):
    code = re.search(r"HTTP response code on [^:]*(?::[^:]*)*: (\d+)", message) \
        or re.search(r"\b(40[0-9]|50[0-9])\b", message)
    number = int(code.group(1)) if code else None
    if number == 0 or "Could not resolve" in message or "onnect" in message:
        return "cannot connect to the server (check the URL, the endpoint and the network)"
    if number in (401, 403) or "AccessDenied" in message or "InvalidAccessKeyId" in message \
            or "SignatureDoesNotMatch" in message:
        return f"access denied (HTTP {number or 403}): check the credentials and permissions"
    if number and number >= 500:
        return f"the server failed (HTTP {number})"
    if number and number != 404:
        return f"refused (HTTP {number})"
    return "does not exist (HTTP 404)" if path.startswith(NETWORK) else "does not exist"


def check_input(path):
    """Raise :class:`InputError` with one line when a network input cannot be read.

    Returns
    -------
    str or None
        A network input's ETag ("" when the server sends none), None for other paths.
        Its HEAD request is the only one: GDAL keeps the answer for the stat and the
        open that follow.
    """
    if not is_network(path):
        return None
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # a failure is reported below, in one line
    try:
        headers = gdal.GetFileMetadata(path, "HEADERS")
    except RuntimeError:
        headers = None
    finally:
        gdal.PopErrorHandler()
    if headers:
        return etag_of(headers)
    gdal.VSICurlPartialClearCache(path)  # the failure is asked again, for its message
    problem = remote_problem(path)
    if problem:
        raise InputError(path, problem)
    return None


def work_path(output, work_folder=None):
    """Where the partial, checkpoint and lock of ``output`` live: beside a local output;
    for a remote one in WORK_FOLDER, under a sub-folder named after the output URL.

    Raises
    ------
    OutputError
        When the work folder does not exist or is not writable.
    """
    if not is_remote_output(output):
        return output
    import hashlib  # here, as tempfile: only a remote OUTPUT needs them (long imports)
    import tempfile

    folder = os.path.abspath(work_folder or tempfile.gettempdir())
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(folder, "WORK_FOLDER (--work-folder) does not exist or is not "
                          "writable")
    digest = hashlib.sha256(output.encode("utf-8")).hexdigest()[:16]
    sub = os.path.join(folder, "streaming-mosaic", digest)
    try:
        os.makedirs(sub, exist_ok=True)
    except OSError as exc:
        raise OutputError(sub, f"cannot create the work folder ({exc.strerror})") from None
    return os.path.join(sub, os.path.basename(output))


def check_output(output):
    """Check, before any pixel is read, that a remote OUTPUT's server answers, its bucket
    exists and the key is not refused to these credentials.

    Raises
    ------
    OutputError
        One line naming the URL.
    """
    # A HEAD of the key: refused or unreachable says so here; a missing key is fine.
    found, message = _stat(output)
    if not found and message and "HTTP response code" in message and ": 404" in message:
        message = ""
    if message:
        raise OutputError(output, _http_reason(message, output))
    bucket = "/".join(output.split("/")[:3])
    if gdal.ReadDir(bucket + "/") is None:
        raise OutputError(output, f"the bucket {bucket} does not exist or cannot be listed "
                          "with these credentials")


def size(path):
    """Bytes of a local or remote file (0 when unknown)."""
    if not path.startswith("/vsi"):
        return os.path.getsize(path)
    st = gdal.VSIStatL(path)
    return st.size if st is not None else 0


def upload(src, output):
    """Copy the finished local file ``src`` to ``output`` in one upload.

    GDAL writes large files to S3 as a multipart upload that becomes visible only
    when complete; a failed upload is aborted and the key keeps what it held.

    Raises
    ------
    OutputError
        Naming the URL; ``src`` is left in place.
    """
    total = os.path.getsize(src)
    part = max(MIN_PART_MB, math.ceil(total / 9000 / MB))
    config = {"VSIS3_CHUNK_SIZE": str(part), "VSIOSS_CHUNK_SIZE": str(part),
              "VSIAZ_CHUNK_SIZE": str(part)}
    try:
        with thread_config(config), open(src, "rb") as fh:
            _copy(fh, output)
    except (GdalFailure, OSError, RuntimeError) as exc:  # RuntimeError: bindings in exception mode
        raise OutputError(output, f"the upload failed ({exc}); the finished file {src} and "
                          "its checkpoint were kept: run again with RESUME to upload it again") \
            from None


def _copy(fh, output):
    gdal.ErrorReset()
    try:
        handle = gdal.VSIFOpenL(output, "wb")
    except RuntimeError as exc:
        raise GdalFailure(str(exc)) from None
    if handle is None:
        raise GdalFailure(gdal.GetLastErrorMsg() or "cannot open for writing")
    for block in iter(lambda: fh.read(UPLOAD_BLOCK), b""):
        if gdal.VSIFWriteL(block, 1, len(block), handle) != len(block):
            # GDAL marks the handle failed: closing aborts the upload.
            message = gdal.GetLastErrorMsg()
            _close_quietly(handle)
            raise GdalFailure(message or "write failed")
    # A local read error above leaves the handle open on purpose: closing it would
    # complete the upload with part of the file. Signals are deferred by the caller.
    check_status(gdal.VSIFCloseL, handle)


def _close_quietly(handle):
    try:
        gdal.VSIFCloseL(handle)
    except RuntimeError:
        pass


def io_cache_bytes(paths):
    """Memory GDAL's HTTP block cache may take when any input is read over the network."""
    if not any(is_network(p) for p in paths):
        return 0
    value = gdal.GetConfigOption("CPL_VSIL_CURL_CACHE_SIZE")
    try:
        return int(value) if value else CURL_CACHE_DEFAULT
    except ValueError:
        return CURL_CACHE_DEFAULT
