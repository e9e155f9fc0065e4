"""Compressed tiles made on a worker and placed in the partial GeoTIFF by the client.

GDAL's Python API cannot write a pre-compressed tile, so the two halves use the
TIFF layout directly:

* a worker writes its finished window with the output's creation options into a
  small GeoTIFF in ``/vsimem/`` (exactly the window, same block size, same
  codec), and returns the bytes of its tiles (:func:`encode_window`);
* the client made the partial with GDAL and ``SPARSE_OK=TRUE`` (every tile
  absent: offset 0); each tile's bytes are appended at the end of the file, by
  the worker itself when it sees the partial (:mod:`.shared`), else by the
  client, and the client patches its TileOffsets / TileByteCounts entries
  (:class:`RawTiles`).

The windows are block-aligned, so a window's tile (i, j) is the output's tile
(x / block + i, y / block + j). A band-interleaved output has one tile per band
and block; a pixel-interleaved one (the default) one per block.
"""

import os
import struct
import uuid

import numpy as np
from osgeo import gdal

from ..errors import OutputError
from ..geokeys import TYPE_SIZES
from . import shared

TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
_TAGS = {256: "width", 257: "height", 277: "samples", 284: "planar", 322: "tile_w",
         323: "tile_h", TILE_OFFSETS: "offsets", TILE_BYTE_COUNTS: "counts"}
_FORMATS = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
# Codecs whose tiles depend on tables kept in the directory (JPEGTables): not movable.
UNMOVABLE = ("JPEG",)


class Layout:
    """The first image of a tiled TIFF: size, tiling and where its tile arrays are."""

    def __init__(self, head, read_at):
        self.order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if self.order is None:
            raise ValueError("not a TIFF")
        version = struct.unpack(self.order + "H", head[2:4])[0]
        big = version == 43
        entry_fmt, entry_size, self.inline = ("HHQ8s", 20, 8) if big else ("HHI4s", 12, 4)
        ifd = struct.unpack(self.order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
        count_fmt = "Q" if big else "H"
        count = struct.unpack(self.order + count_fmt,
                              read_at(ifd, struct.calcsize(count_fmt)))[0]
        start = ifd + struct.calcsize(count_fmt)
        entries = read_at(start, count * entry_size)
        self.planar, self.samples = 1, 1
        for i in range(count):
            tag, kind, n, value = struct.unpack_from(self.order + entry_fmt, entries,
                                                     i * entry_size)
            if tag not in _TAGS:
                continue
            if tag in (TILE_OFFSETS, TILE_BYTE_COUNTS):
                if kind not in _FORMATS:
                    raise ValueError(f"tile array of TIFF type {kind}")
                inline = n * TYPE_SIZES[kind] <= self.inline
                where = start + i * entry_size + entry_size - self.inline if inline else \
                    struct.unpack(self.order + ("Q" if big else "I"), value)[0]
                setattr(self, _TAGS[tag], (_FORMATS[kind], n, where))
            else:
                fmt = _FORMATS.get(kind, "I")
                setattr(self, _TAGS[tag], struct.unpack_from(self.order + fmt, value)[0])
        if not hasattr(self, "offsets") or not hasattr(self, "counts"):
            raise ValueError("not a tiled TIFF")
        self.across = -(-self.width // self.tile_w)
        self.down = -(-self.height // self.tile_h)
        self.planes = self.samples if self.planar == 2 else 1

    def entry(self, plane, tx, ty):
        """Index of a tile in the tile arrays."""
        return (plane * self.down + ty) * self.across + tx

    def values(self, which, read_at):
        fmt, n, where = getattr(self, which)
        return struct.unpack(f"{self.order}{n}{fmt}", read_at(where, n * struct.calcsize(fmt)))


def window_options(plan):
    """Creation options of a window's GeoTIFF: the output's, minus what only the output needs."""
    drop = ("BIGTIFF", "NUM_THREADS", "COPY_SRC_OVERVIEWS")
    return [f"{k}={v}" for k, v in plan.creation_options.items() if k.upper() not in drop]


def encode_window(plan, window, array, sparse):
    """Compress a finished window (bands, h, w) as the output would; return its tiles.

    Returns
    -------
    dict
        ``{(plane, tile_x, tile_y): bytes}`` in output tile numbers; tiles a
        sparse output leaves out are missing.

    Raises
    ------
    OutputError
        GDAL did not write a tile, twice, that holds data (every tile of a window
        that is not sparse; checked, so a window can never reach the output with a
        tile missing).
    """
    empty = _empty_tile(plan, array) if sparse else None
    for _attempt in range(2):  # once more: the cause of the one case seen is not known
        blob, status = _encode(plan, window, array, sparse)
        try:
            return split_tiles(blob, window.x, window.y, complete=not sparse, empty=empty)
        except (ValueError, struct.error) as exc:  # a tile absent, or the file cut short
            error = f"{exc or type(exc).__name__} in {len(blob)} bytes; WriteRaster: {status}"
    raise OutputError(f"/vsimem/ (window {window.index + 1})",
                      f"compressing the window on the worker failed twice ({error})")


def _empty_tile(plan, array):
    """``empty(plane, i, j, layout)``: True when the window's tile (i, j) is all nodata,
    so a sparse GeoTIFF may leave it out."""
    from ..writer import unwritten

    def empty(plane, i, j, layout):
        bands = slice(plane, plane + 1) if layout.planes > 1 else slice(None)
        return unwritten(plan, array[bands, j * layout.tile_h:(j + 1) * layout.tile_h,
                                     i * layout.tile_w:(i + 1) * layout.tile_w])
    return empty


def _encode(plan, window, array, sparse):
    """The window written as a GeoTIFF in /vsimem/: its bytes, and GDAL's write status."""
    from ..writer import gdal_type  # the writer imports nothing of ours back
    path = f"/vsimem/streaming_mosaic_{uuid.uuid4().hex}.tif"
    co = window_options(plan) + (["SPARSE_OK=TRUE"] if sparse else [])
    gdal.ErrorReset()
    try:
        ds = gdal.GetDriverByName("GTiff").Create(path, window.w, window.h, plan.out_bands,
                                                  gdal_type(plan.out_dtype), co)
        if plan.nodata_out is not None:
            for b in range(1, plan.band_count + 1):
                ds.GetRasterBand(b).SetNoDataValue(plan.nodata_out)
        data = np.ascontiguousarray(array)
        if data.dtype == np.int8 and not hasattr(gdal, "GDT_Int8"):
            data = data.view(np.uint8)
        status = ds.WriteRaster(0, 0, window.w, window.h, data, buf_type=gdal_type(data.dtype),
                                band_list=list(range(1, plan.out_bands + 1)))
        ds = None
        status = f"{status}, {(gdal.GetLastErrorMsg() or 'no error').strip()}"
        return _read_vsimem(path), status
    finally:
        gdal.Unlink(path)


def _read_vsimem(path):
    size = gdal.VSIStatL(path).size
    fh = gdal.VSIFOpenL(path, "rb")
    try:
        return bytes(gdal.VSIFReadL(1, size, fh))
    finally:
        gdal.VSIFCloseL(fh)


def split_tiles(blob, x, y, complete=False, empty=None):
    """The tiles of a TIFF held in ``blob``, numbered as the output's tiles for a
    window at pixel (x, y) of the output.

    ``complete``: raise ValueError when a tile is absent (offset or size 0);
    ``empty(plane, tx, ty, layout)``: whether an absent tile may be (all nodata).
    """
    def read_at(pos, n):
        return blob[pos:pos + n]
    layout = Layout(blob[:16], read_at)
    tx0, ty0 = x // layout.tile_w, y // layout.tile_h
    offsets = layout.values("offsets", read_at)
    counts = layout.values("counts", read_at)
    tiles = {}
    for plane in range(layout.planes):
        for ty in range(layout.down):
            for tx in range(layout.across):
                k = layout.entry(plane, tx, ty)
                if offsets[k] and counts[k]:
                    if offsets[k] + counts[k] > len(blob):
                        raise ValueError(f"tile {k} ends past the file's {len(blob)} bytes")
                    tiles[(plane, tx0 + tx, ty0 + ty)] = blob[offsets[k]:offsets[k] + counts[k]]
                elif empty is not None and not empty(plane, tx, ty, layout):
                    raise ValueError(f"tile {k} absent, and it holds data")
    if complete and len(tiles) < len(offsets):
        raise ValueError(f"{len(offsets) - len(tiles)} of {len(offsets)} tiles absent in "
                         f"{len(blob)} bytes")
    return tiles


class RawTiles:
    """The client's writer: compressed tiles appended to a GDAL-made tiled GeoTIFF.

    A window's tiles are appended with one system call (:meth:`write`), or were
    appended by a worker (:meth:`place`, after :meth:`share`). The tile arrays are
    kept in memory and written into the file by :meth:`flush` (before its fsync,
    which also makes the workers' appends durable on a local disk, so a checkpoint
    covers them) and :meth:`close`. Only this process writes the tile arrays.
    """

    def __init__(self, path):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise OutputError(path, f"the partial output cannot be reopened ({exc})") from None
        try:
            self.layout = Layout(os.pread(self.fd, 16, 0), self._read_at)
            self.tables = {which: list(self.layout.values(which, self._read_at))
                           for which in ("offsets", "counts")}
        except (ValueError, struct.error) as exc:
            os.close(self.fd)
            raise OutputError(path, f"the partial output is not a tiled GeoTIFF ({exc}); "
                              "run without RESUME to start over") from None
        self.classic = self.layout.offsets[0] == "I"
        self.target = None  # a shared.Target once workers may append
        self.dirty = False

    def _read_at(self, pos, n):
        return os.pread(self.fd, n, pos)

    def share(self):
        """Let workers append to the partial too (see :mod:`.shared`).

        Returns
        -------
        shared.Target or None
            What the workers need, or None when this file system cannot lock files.
        """
        try:
            self.target = shared.publish(self.fd, self.path, self.classic)
        except OSError:  # no locks here (some network file systems): this process writes
            self.target = None
        return self.target

    def write(self, tiles):
        """Append ``{(plane, tx, ty): bytes}`` and point the tile arrays at them."""
        try:
            places = shared.append(self.fd, tiles, self.classic, lock=self.target is not None)
        except OSError as exc:
            from ..writer import output_error
            raise output_error(self.path, exc, "writing a tile failed") from None
        self.place(places)

    def place(self, places):
        """Point the tile arrays at tiles already in the file: ``{(plane, tx, ty): (offset, size)}``."""
        for (plane, tx, ty), (offset, count) in places.items():
            k = self.layout.entry(plane, tx, ty)
            self.tables["offsets"][k], self.tables["counts"][k] = offset, count
        self.dirty = self.dirty or bool(places)

    def _write_tables(self):
        for which in ("offsets", "counts"):
            fmt, n, where = getattr(self.layout, which)
            shared.write_all(self.fd, [struct.pack(f"{self.layout.order}{n}{fmt}",
                                                   *self.tables[which])], where)
        self.dirty = False

    def flush(self):
        try:
            if self.dirty:
                self._write_tables()
            os.fsync(self.fd)
        except OSError as exc:
            from ..writer import output_error
            raise output_error(self.path, exc, "flushing the output failed") from None

    def close(self):
        if self.fd is not None:
            try:
                if self.target is not None:
                    shared.revoke(self.fd, self.target)  # no worker appends after this
                    self.target = None
                if self.dirty:
                    self._write_tables()
            finally:
                os.close(self.fd)
                self.fd = None
