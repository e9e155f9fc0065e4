"""Describe thousands of look-alike GeoTIFF tiles by asking GDAL about one of them.

Tiles cut from one raster by one tool differ only in where they lie and in where
their pixel data sits in the file: their first image file directory (IFD) has
the same tags with the same values, but for the strip or tile offsets and byte
counts, the pixel scale and the tie point. :class:`Lookalikes` reads the IFD of
a plain local TIFF (a few dozen microseconds, against ~0.2 ms for opening and
describing it through GDAL) and keys it on everything else. The first input of
a key is described by GDAL; the others copy its description with their own
geotransform, computed from their tie point and pixel scale as GDAL does (the
formula is checked against GDAL's answer on that first input, else the key is
never used) and their own file fingerprint.

Only a file GDAL reads from its first IFD alone is eligible: one image (no next
IFD, so no internal mask or overviews), no SubIFDs, no model transformation,
one tie point, and no file beside it named like it (no ``.aux.xml``, ``.msk``,
world file...), whose contents GDAL would read too.
"""

import bisect
import copy
import os
import struct

from osgeo import gdal

from .geokeys import TYPE_SIZES
from .inputfiles import stat

# Tags that differ between look-alike tiles: strip/tile offsets and byte counts.
_PER_FILE = {273, 279, 324, 325}
_SCALE, _TIEPOINT, _TRANSFORM, _SUBIFDS = 33550, 33922, 34264, 330
_DOUBLE = 12
_MAX_TAG_BYTES = 1 << 16
_HEAD = 4096


def read_header(path):
    """(key, pixel scale, tie point) of a plain TIFF's only image, or None when the
    file is not eligible (see the module docstring) or cannot be parsed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        return _parse(_Raw(fd))
    except (OSError, struct.error, ValueError):
        return None
    finally:
        os.close(fd)


class _Raw:
    """Unbuffered reads of an open file descriptor (no file object: ~5 us less per tile)."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def read(self, size):
        return os.read(self.fd, size)

    def seek(self, offset):
        os.lseek(self.fd, offset, os.SEEK_SET)


def _parse(fh):
    head = fh.read(_HEAD)  # the IFD and its values are usually here (GDAL writes them first)

    def chunk(offset, length):
        if offset + length <= len(head):
            return head[offset:offset + length]
        fh.seek(offset)
        data = fh.read(length)
        if len(data) != length:
            raise ValueError("truncated")
        return data

    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return None
    version = struct.unpack(order + "H", chunk(2, 2))[0]
    if version == 42:
        count_fmt, entry_fmt, offset_fmt, inline = "H", "HHI4s", "I", 4
        ifd = struct.unpack(order + "I", chunk(4, 4))[0]
    elif version == 43:
        count_fmt, entry_fmt, offset_fmt, inline = "Q", "HHQ8s", "Q", 8
        ifd = struct.unpack(order + "Q", chunk(8, 8))[0]
    else:
        return None
    count_size = struct.calcsize(count_fmt)
    count = struct.unpack(order + count_fmt, chunk(ifd, count_size))[0]
    if not 0 < count < 1024:
        return None
    size = struct.calcsize(order + entry_fmt)
    table = chunk(ifd + count_size, count * size + struct.calcsize(offset_fmt))
    if struct.unpack_from(order + offset_fmt, table, count * size)[0] != 0:
        return None  # a second image: an internal mask or overviews
    key, values = [order, version], {}
    for tag, kind, n, value in struct.iter_unpack(order + entry_fmt, table[:count * size]):
        if tag in (_TRANSFORM, _SUBIFDS):
            return None
        if tag in _PER_FILE:
            key.append((tag, kind))
            continue
        length = n * TYPE_SIZES.get(kind, 0)
        if length == 0 or length > _MAX_TAG_BYTES:
            return None
        if length <= inline:
            data = value[:length]
        else:
            data = chunk(struct.unpack(order + offset_fmt, value)[0], length)
        if tag in (_SCALE, _TIEPOINT):
            if kind != _DOUBLE:
                return None
            values[tag] = struct.unpack(f"{order}{n}d", data)
            key.append((tag, n))
        else:
            key.append((tag, kind, data))
    scale, tie = values.get(_SCALE), values.get(_TIEPOINT)
    if scale is None or tie is None or len(scale) != 3 or len(tie) != 6:
        return None
    key.append((scale[0] > 0, scale[1] > 0))
    return tuple(key), scale, tie


def geotransform(scale, tie):
    """GDAL's geotransform of a north-up GeoTIFF (PixelIsArea) from its tags."""
    res_x, res_y = scale[0], -scale[1]
    return (tie[3] - tie[0] * res_x, res_x, 0.0, tie[4] - tie[1] * res_y, 0.0, res_y)


class Lookalikes:
    """Descriptions of the inputs of one scan, shared between look-alike tiles.

    Parameters
    ----------
    describe : callable(index, path, etag) -> SourceInfo
        The full description through GDAL (etag: a remote input's, or None).
    """

    def __init__(self, describe):
        self.describe = describe
        # .aux.xml files kept elsewhere: a tile's own one could not be seen beside it.
        self.enabled = not gdal.GetConfigOption("GDAL_PAM_PROXY_DIR")
        self.templates = {}  # header key -> SourceInfo to copy, or False (not usable)
        self.folders = {}    # folder -> its lower-case file names, sorted

    def __call__(self, index, path, etag=None):
        header = None if etag else self._header(path)
        if header is None:
            return self.describe(index, path, etag)
        key, scale, tie = header
        template = self.templates.get(key)
        if template is None:
            info = self.describe(index, path, etag)
            if key not in self.templates:
                usable = tuple(info.geotransform) == geotransform(scale, tie)
                self.templates[key] = info if usable else False
            return info
        if template is False:
            return self.describe(index, path, etag)
        return _copy(template, index=index, path=path, geotransform=geotransform(scale, tie),
                     files=(stat(path),))

    def _header(self, path):
        if not self.enabled or path.startswith("/vsi") or not path.lower().endswith((".tif", ".tiff")) \
                or not os.path.isabs(path):
            return None
        folder, name = os.path.split(path)
        names = self.folders.get(folder)
        if names is None:
            names = self.folders[folder] = _listing(folder)
        if _beside(names, name.lower()) != 1:
            return None  # a side-car file (or a folder GDAL could not list either)
        return read_header(path)


def _copy(info, **changes):
    """``dataclasses.replace`` without running ``__init__`` again (10,000 tiles: 0.1 s)."""
    copied = copy.copy(info)
    for name, value in changes.items():
        object.__setattr__(copied, name, value)  # a frozen dataclass
    return copied


def _listing(folder):
    """The lower-case names in ``folder``, sorted (empty when it cannot be listed)."""
    try:
        return sorted(name.lower() for name in os.listdir(folder))
    except OSError:
        return []


def _beside(names, name):
    """How many of ``names`` are ``name`` or begin with its name without extension and a dot
    (``a.tif``: ``a.tif``, ``a.tif.msk``, ``a.tfw``, ``a.aux``...)."""
    prefix = name.rsplit(".", 1)[0] + "."
    start = bisect.bisect_left(names, prefix)
    found = 0
    for other in names[start:start + 3]:
        if not other.startswith(prefix):
            break
        found += 1
    return found
