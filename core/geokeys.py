"""A cache of GeoTIFF CRS by their raw GeoKeys, so 10,000 tiles cost one CRS lookup.

GDAL builds a GeoTIFF's CRS from its GeoKeys through PROJ's database: about
0.3 ms a file, 3 s for 10,000 tiles that nearly always share one CRS. Reading
the three GeoKey tags takes a few dozen microseconds, so the CRS is looked up
once per distinct set of keys. Files GDAL might georeference otherwise (a
``.aux.xml`` beside them, other formats, unusual TIFFs) are not cached.
"""

import os
import struct
import threading

_KEY_TAGS = (34735, 34736, 34737)  # GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams
# Bytes of one value of each TIFF field type (BigTIFF's LONG8, SLONG8, IFD8 included).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              16: 8, 17: 8, 18: 8}
_cache = {}
_lock = threading.Lock()


def raw_keys(path):
    """The raw bytes of a classic or Big TIFF's GeoKey tags, or None when not applicable."""
    return raw_tags(path, _KEY_TAGS) or None


def raw_tags(path, tags):
    """((tag, type, byte order, bytes), ...) of the ``tags`` a plain TIFF's first image
    has (() when none), or None when not applicable (not a TIFF, a .aux.xml beside it)."""
    if not path.lower().endswith((".tif", ".tiff")) or os.path.exists(path + ".aux.xml"):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            if head[:2] == b"II":
                order = "<"
            elif head[:2] == b"MM":
                order = ">"
            else:
                return None
            version = struct.unpack(order + "H", head[2:4])[0]
            if version == 42:
                count_fmt, entry_fmt, entry_size, inline = "H", "HHI4s", 12, 4
                ifd = struct.unpack(order + "I", head[4:8])[0]
            elif version == 43:
                count_fmt, entry_fmt, entry_size, inline = "Q", "HHQ8s", 20, 8
                ifd = struct.unpack(order + "Q", head[8:16])[0]
            else:
                return None
            fh.seek(ifd)
            size = struct.calcsize(count_fmt)
            count = struct.unpack(order + count_fmt, fh.read(size))[0]
            if not 0 < count < 4096:
                return None
            entries = fh.read(count * entry_size)
            found = []
            for i in range(count):
                tag, kind, n, value = struct.unpack_from(order + entry_fmt, entries, i * entry_size)
                if tag not in tags:
                    continue
                length = n * TYPE_SIZES.get(kind, 0)
                if length == 0 or length > 1 << 20:
                    return None
                if length <= inline:
                    data = value[:length]
                else:
                    fh.seek(struct.unpack(order + ("I" if inline == 4 else "Q"), value)[0])
                    data = fh.read(length)
                found.append((tag, kind, order, data))
            return tuple(found)
    except (OSError, struct.error):
        return None


def cached_crs_wkt(path, lookup):
    """The CRS WKT of ``path``: from the cache when its GeoKeys were seen before.

    ``lookup()`` computes it the slow way (GDAL) on a miss or for uncacheable files.
    """
    keys = raw_keys(path)
    if keys is None:
        return lookup()
    with _lock:
        if keys in _cache:
            return _cache[keys]
    wkt = lookup()
    with _lock:
        _cache[keys] = wkt
    return wkt
