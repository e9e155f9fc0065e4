"""Reading one input's part of a window, window by window.

:func:`read` returns the part of a window an input covers as ``(data, valid)``
arrays, ``valid`` being None when every pixel is valid. How each input is read
(its :class:`~.specs.SourceSpec`) is decided by :mod:`.specs`.
"""

import collections
import math

import numpy as np
from osgeo import gdal

from .errors import InputError
from .gdalenv import GdalFailure, check, open_readonly
from .sources import representable
from .specs import WARP_ERROR, SourceSpec, build_spec  # noqa: F401 (re-exported)


class Handles:
    """A per-thread LRU of open datasets, so thousands of inputs never exhaust files.

    GDAL datasets are not thread-safe: each worker thread owns one ``Handles``.
    """

    def __init__(self, capacity=64):
        self.capacity = capacity
        self._open = collections.OrderedDict()

    def get(self, spec):
        ds = self._open.get(spec.index)
        if ds is not None:
            self._open.move_to_end(spec.index)
            return ds
        try:
            ds = (open_readonly(spec.path, spec.driver) if spec.kind == "direct"
                  else check(gdal.Open, spec.xml))
        except GdalFailure as exc:
            raise InputError(spec.path, f"cannot be opened ({exc})") from None
        self._open[spec.index] = ds
        while len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return ds

    def close(self):
        self._open.clear()


class Scratch:
    """Reusable per-thread buffers, grown on demand and never shrunk."""

    def __init__(self):
        self._buffers = {}

    def array(self, key, shape, dtype):
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(size, dtype)
            self._buffers[key] = buf
        return buf[:size].reshape(shape)


def read(spec, handles, scratch, x0, y0, x1, y1, nodata_input=None, key="src"):
    """Read the part of grid window ``[x0:x1, y0:y1]`` that ``spec`` covers.

    Returns
    -------
    None, or (ox, oy, data, valid)
        ``data`` is (bands, h, w) placed at column ``ox``, row ``oy`` of the
        window; ``valid`` a bool array of the same shape, or None when every
        pixel is valid. Arrays live in ``scratch`` and are overwritten by the
        next read with the same ``key``.

    Raises
    ------
    InputError
        When GDAL fails to read the input (corrupt or truncated file).
    """
    bx0, by0, bx1, by1 = spec.bbox
    ix0, iy0, ix1, iy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    w, h = ix1 - ix0, iy1 - iy0
    window = (ix0 - spec.origin[0], iy0 - spec.origin[1], w, h)
    ds = handles.get(spec)
    nb = len(spec.bands)
    data = scratch.array(key, (nb, h, w), spec.dtype)
    _read_into(ds, spec, *window, data, spec.bands)
    plain = _one_nodata(spec)
    if plain is not None and nodata_input is None:
        # The usual case (one nodata value for all bands, nothing else): one comparison.
        valid = scratch.array(key + ".valid", (nb, h, w), bool)
        return ix0 - x0, iy0 - y0, data, _not_value(data, plain, valid)
    valid = _Validity(scratch, key, (nb, h, w))
    nodata = [nd for nd in spec.nodata if nd is not None]
    if nodata:
        # First, so the usual case (nodata only) is one comparison into the result.
        valid.add_values(data, spec.nodata)
    if spec.mask != "none":
        _file_masks(ds, spec, window, valid, scratch, key)
    bands = spec.shared + tuple(b for t in spec.per_band for b in t if b)
    if bands:
        masks = scratch.array(key + ".mask", (len(bands), h, w), np.uint8)
        _read_into(ds, spec, *window, masks, bands)
        for i in range(len(spec.shared)):
            valid.add(masks[i] != 0)
        i = len(spec.shared)
        for numbers in spec.per_band:
            for b, number in enumerate(numbers):
                if number:
                    valid.add(masks[i] != 0, b)
                    i += 1
    if nodata_input is not None and representable(nodata_input, spec.dtype):
        valid.add_values(data, (nodata_input,) * nb)
    return ix0 - x0, iy0 - y0, data, valid.array


def _one_nodata(spec):
    """The nodata value shared by every band when it is the spec's only validity test."""
    if spec.mask != "none" or spec.shared or spec.per_band or not spec.nodata:
        return None
    first = spec.nodata[0]
    if first is None or any(repr(nd) != repr(first) for nd in spec.nodata):
        return None
    return first


def read_data(spec, handles, x0, y0, x1, y1, out):
    """Read ``spec``'s data bands for grid window ``[x0:x1, y0:y1]`` (inside its bbox)
    into ``out`` (bands, y1 - y0, x1 - x0), which may be a strided view.

    Raises
    ------
    InputError
        When GDAL fails to read the input.
    """
    window = (x0 - spec.origin[0], y0 - spec.origin[1], x1 - x0, y1 - y0)
    _read_into(handles.get(spec), spec, *window, out, spec.bands)


class _Validity:
    """The AND of validity conditions, built in reused buffers (None: all valid)."""

    def __init__(self, scratch, key, shape):
        self.scratch, self.key, self.shape = scratch, key, shape
        self.array = None

    def _start(self):
        self.array = self.scratch.array(self.key + ".valid", self.shape, bool)
        self.array[...] = True

    def add(self, condition, band=None):
        """AND a (h, w) condition into every band, or into ``band`` only."""
        if self.array is None:
            if band is None:
                self.array = self.scratch.array(self.key + ".valid", self.shape, bool)
                self.array[...] = condition
                return
            self._start()
        target = self.array if band is None else self.array[band]
        target &= condition

    def add_values(self, data, values):
        """AND ``data[b] != values[b]`` (None: no condition on band b)."""
        if self.array is None:
            self.array = self.scratch.array(self.key + ".valid", self.shape, bool)
            _not_nodata(data, values, self.array)
        else:
            tmp = self.scratch.array(self.key + ".tmp", self.shape, bool)
            self.array &= _not_nodata(data, values, tmp)


def _file_masks(ds, spec, window, valid, scratch, key):
    """AND the file's own GDAL mask bands (direct reads), once for a per-dataset mask."""
    sx, sy, w, h = window
    mask = scratch.array(key + ".gdalmask", (h, w), np.uint8)
    for b, number in enumerate(spec.bands):
        band = ds.GetRasterBand(number).GetMaskBand()
        _gdal_read(spec, band.ReadAsArray, sx, sy, w, h, buf_obj=mask)
        if spec.mask == "dataset":
            valid.add(mask != 0)
            return
        valid.add(mask != 0, b)


def _read_into(ds, spec, sx, sy, w, h, out, band_list):
    _gdal_read(spec, ds.ReadAsArray, sx, sy, w, h, buf_obj=out, band_list=list(band_list))


def _gdal_read(spec, read_call, *args, **kwargs):
    """Run a GDAL ReadAsArray; a failure (None, or an exception in exception mode)
    is an InputError naming the input."""
    try:
        result = read_call(*args, **kwargs)
    except RuntimeError as exc:
        raise InputError(spec.path, f"read failed ({exc})") from None
    if result is None:
        msg = (gdal.GetLastErrorMsg() or "").strip() or "unknown GDAL error"
        raise InputError(spec.path, f"read failed ({msg})")


def _not_nodata(data, nodata, out):
    """out[b] = data[b] is not nodata[b] (True where a band has no nodata); returns out."""
    if len(set(map(repr, nodata))) == 1:  # the usual case: one call for all bands
        _not_value(data, nodata[0], out)
    else:
        for b, nd in enumerate(nodata):
            _not_value(data[b], nd, out[b])
    return out


def _not_value(data, value, out):
    """out = data != value, with NaN meaning NaN; value is cast to data's type; returns out."""
    if value is None:
        out[...] = True
    elif isinstance(value, float) and math.isnan(value):
        np.isnan(data, out=out)
        np.logical_not(out, out=out)
    else:
        np.not_equal(data, data.dtype.type(value), out=out)
    return out
