"""How each input is read on the output grid, and reading it window by window.

Every input gets a :class:`SourceSpec`, one of three kinds:

``direct``
    Same CRS and pixel size as the output, origin on a whole output pixel: the
    window is read straight from the file, no resampling, into a reused numpy
    buffer. This is the common case and the fast one.
``vrt``
    Same CRS, but its pixels do not line up with the output grid: read through
    a one-source VRT built by GDAL on the output grid (exactly the source
    rectangle ``gdalbuildvrt`` would write), with extra bands carrying the
    input's mask (``mask,N``) so validity is resampled the same way.
``warp``
    Another CRS: read through a warped VRT (``gdalwarp -of VRT``) on the output
    grid, restricted to the input's footprint, with a destination alpha band for
    validity. Only the windows asked for are ever warped.

:func:`read` returns the part of a window an input covers as ``(data, valid)``
arrays, ``valid`` being None when every pixel is valid.
"""

import collections
import copy
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from .errors import InputError
from .gdalenv import GdalFailure, check, open_readonly
from .options import RESAMPLINGS

# Resampling methods a VRT source can apply; others go through the warper.
# Not "average": GDAL 3.6 VRT sources average differently depending on the
# window read, so windowed results would depend on CHUNK_SIZE. Not "mode": GDAL
# 3.6 and 3.10 VRT sources disagree on it; the warper gives gdalwarp's result on both.
VRT_RESAMPLINGS = {"near", "bilinear", "cubic", "cubicspline", "lanczos"}

# Working memory the warper may use for one warped read (counted in the budget).
WARP_MEMORY = 16 * 2**20

# Error (pixels) allowed to GDAL's approximate transformer. gdalwarp's default,
# 0.125, leaves room for a tool that cuts the output into other chunks to pick the
# neighbouring source pixel (0.3-1% of the pixels of a WGS 84 tile warped to UTM);
# 0.01 costs the same here (measured: 0.36 vs 0.37 s CPU for 3000x3000 px), exact
# transforms (0) cost 4.5x.
WARP_ERROR = 0.01


@dataclass(frozen=True)
class SourceSpec:
    """Everything a worker needs to read one input on the output grid (picklable)."""

    index: int
    path: str
    kind: str           # direct, vrt or warp
    bbox: tuple         # x0, y0, x1, y1: grid pixels the input may touch
    origin: tuple       # grid pixel (x, y) of the opened dataset's pixel (0, 0)
    bands: tuple        # band numbers to read from the opened dataset
    mask_bands: tuple   # vrt/warp: bands holding validity (non-zero = valid)
    mask_mode: str      # direct: none, nodata, dataset (one mask band) or band
    nodata: tuple       # direct: per band nodata value or None
    dtype: str
    xml: str = None     # vrt/warp: the VRT document to open
    alpha: int = 0      # direct: alpha band also masking a nodata input; vrt: 1 when the
                        # last mask band is such an alpha band (shared by all bands)


def _aligned(value):
    return abs(value - round(value)) < 1e-6


def _representable(value, dtype):
    """True when ``value`` can occur as a pixel of ``dtype`` (so can mean nodata)."""
    if value is None:
        return False
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return True
    if math.isnan(value) or value != math.floor(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def build_spec(info, footprint, grid, resampling, margin=2):
    """Decide how to read ``info`` on ``grid`` and return its :class:`SourceSpec`.

    Returns None when the input does not touch the grid.
    """
    gdal_resampling = dict(RESAMPLINGS)[resampling]
    gt, ggt = info.geotransform, grid.geotransform
    if footprint.same_crs:
        bbox = grid.pixel_bbox(footprint.bounds)
        if bbox is None:
            return None
        ox = (gt[0] - ggt[0]) / ggt[1]
        oy = (gt[3] - ggt[3]) / ggt[5]
        same_res = (abs(gt[1] - ggt[1]) <= 1e-9 * abs(ggt[1])
                    and abs(gt[5] - ggt[5]) <= 1e-9 * abs(ggt[5]))
        if same_res and _aligned(ox) and _aligned(oy):
            return _direct_spec(info, grid, (round(ox), round(oy)))
        if gdal_resampling in VRT_RESAMPLINGS:
            return _vrt_spec(info, grid, bbox, gdal_resampling)
    bbox = grid.pixel_bbox(footprint.bounds, margin=margin)
    if bbox is None:
        return None
    return _warp_spec(info, grid, bbox, gdal_resampling)


def _direct_spec(info, grid, origin):
    x0, y0 = origin
    bbox = (max(x0, 0), max(y0, 0), min(x0 + info.width, grid.width),
            min(y0 + info.height, grid.height))
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        return None
    if info.mask_per_band:
        mode = "band"
    elif info.mask_per_dataset:
        mode = "dataset"
    elif any(_representable(nd, info.dtype) for nd in info.nodata):
        mode = "nodata"
    else:
        mode = "none"
    nodata = tuple(nd if _representable(nd, info.dtype) else None for nd in info.nodata)
    # GDAL's mask of a band with a nodata value ignores the alpha band: apply both.
    alpha = info.alpha_band if mode == "nodata" else 0
    return SourceSpec(info.index, info.path, "direct", bbox, origin, info.bands, (), mode,
                      nodata, info.dtype, alpha=alpha)


def _vrt_spec(info, grid, bbox, resampling):
    """A one-source VRT on the whole grid, as gdalbuildvrt lays the source out."""
    try:
        ds = check(gdal.BuildVRT, "", [info.path], outputBounds=grid.bounds,
                   xRes=grid.res[0], yRes=grid.res[1], bandList=list(info.bands),
                   srcNodata="None", VRTNodata="None", resampleAlg=resampling,
                   allowProjectionDifference=True)
        xml = ds.GetMetadata("xml:VRT")[0]
        ds = None
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be laid out on the output grid ({exc})") from None
    root = ET.fromstring(xml)
    data_bands = root.findall("VRTRasterBand")
    # A nodata value makes each band's mask its own (a hole may be in one band only);
    # only a per-dataset mask or alpha band is shared by all bands.
    per_band = info.mask_per_band or any(nd is not None for nd in info.nodata)
    sources = data_bands if per_band else data_bands[:1]
    mask_bands = []
    for i, band in enumerate(sources):
        mask_bands.append(_add_band(root, band, f"mask,{info.bands[i]}"))
    alpha = bool(info.alpha_band and any(nd is not None for nd in info.nodata))
    if alpha:
        # The bands' masks are their nodata masks then: add the alpha band itself.
        mask_bands.append(_add_band(root, sources[0], str(info.alpha_band)))
    return SourceSpec(info.index, info.path, "vrt", bbox, (0, 0),
                      tuple(range(1, len(data_bands) + 1)), tuple(mask_bands), "none",
                      (None,) * len(info.bands), info.dtype, ET.tostring(root, "unicode"),
                      alpha=int(alpha))


def _add_band(root, template, source_band):
    """Append a Byte band reading ``source_band`` ("mask,1", "4") of the template
    band's source through the same rectangles, sampled as nearest; return its number."""
    src = template.find("SimpleSource")
    if src is None:
        src = template.find("ComplexSource")
    number = len(root.findall("VRTRasterBand")) + 1
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(number))
    copy_ = copy.deepcopy(src)
    copy_.attrib.pop("resampling", None)  # validity is sampled as nearest
    copy_.find("SourceBand").text = source_band
    props = copy_.find("SourceProperties")
    if props is not None:
        copy_.remove(props)
    band.append(copy_)
    return number


def _warp_spec(info, grid, bbox, resampling):
    """A warped VRT covering ``bbox`` of the grid, with an alpha band for validity."""
    x0, y0, x1, y1 = bbox
    src = info.path
    all_data = tuple(b for b in range(1, info.band_count + 1) if b != info.alpha_band)
    try:
        if tuple(info.bands) != all_data:
            # Select the bands, keeping the alpha band the warper uses as a mask;
            # the selection VRT is embedded as XML so the document stands alone.
            band_list = list(info.bands) + ([info.alpha_band] if info.alpha_band else [])
            sel = check(gdal.Translate, "", info.path, format="VRT", bandList=band_list)
            src = sel.GetMetadata("xml:VRT")[0]
            sel = None
        nodata = {}
        if any(nd is not None for nd in info.nodata):
            # The alpha band says where the input is; a band's own nodata marks its
            # holes: keep them as nodata (not 0) so they stay invalid per band.
            nodata = dict(dstNodata=" ".join("None" if nd is None else repr(float(nd))
                                              for nd in info.nodata),
                          warpOptions=["INIT_DEST=NO_DATA"])
        ds = check(gdal.Warp, "", src, format="VRT", dstSRS=grid.crs_wkt,
                   outputBounds=grid.window_bounds(x0, y0, x1, y1),
                   xRes=grid.res[0], yRes=grid.res[1], resampleAlg=resampling,
                   dstAlpha=True, warpMemoryLimit=WARP_MEMORY, multithread=False,
                   errorThreshold=WARP_ERROR, **nodata)
        xml = ds.GetMetadata("xml:VRT")[0]
        count = ds.RasterCount
        ds = None
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be reprojected to the output grid ({exc})") from None
    return SourceSpec(info.index, info.path, "warp", bbox, (x0, y0),
                      tuple(range(1, count)), (count,), "none", tuple(info.nodata),
                      info.dtype, xml)


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
            ds = open_readonly(spec.path) if spec.kind == "direct" else check(gdal.Open, spec.xml)
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
        size = int(np.prod(shape))
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
    sx, sy = ix0 - spec.origin[0], iy0 - spec.origin[1]
    ds = handles.get(spec)
    nb = len(spec.bands)
    data = scratch.array(key, (nb, h, w), spec.dtype)
    _read_into(ds, spec, sx, sy, w, h, data, spec.bands)
    valid = None
    if spec.mask_bands:
        masks = scratch.array(key + ".mask", (len(spec.mask_bands), h, w), np.uint8)
        _read_into(ds, spec, sx, sy, w, h, masks, spec.mask_bands)
        valid = scratch.array(key + ".valid", (nb, h, w), bool)
        per_band = len(spec.mask_bands) - spec.alpha
        np.not_equal(masks[:per_band], 0, out=valid if per_band == nb else valid[:1])
        if per_band != nb:
            valid[1:] = valid[:1]
        if spec.alpha:
            valid &= masks[-1:] != 0
        if spec.kind == "warp" and any(nd is not None for nd in spec.nodata):
            valid &= _not_nodata(data, spec.nodata, scratch.array(key + ".tmp", (nb, h, w), bool))
    elif spec.mask_mode == "nodata":
        valid = _not_nodata(data, spec.nodata, scratch.array(key + ".valid", (nb, h, w), bool))
        if spec.alpha:
            alpha = scratch.array(key + ".mask", (h, w), np.uint8)
            _gdal_read(spec, ds.GetRasterBand(spec.alpha).ReadAsArray, sx, sy, w, h, buf_obj=alpha)
            valid &= (alpha != 0)[None]
    elif spec.mask_mode in ("dataset", "band"):
        valid = scratch.array(key + ".valid", (nb, h, w), bool)
        masks = scratch.array(key + ".mask", (h, w), np.uint8)
        for b, band_number in enumerate(spec.bands):
            if spec.mask_mode == "dataset" and b > 0:
                valid[b] = valid[0]
                continue
            band = ds.GetRasterBand(band_number).GetMaskBand()
            _gdal_read(spec, band.ReadAsArray, sx, sy, w, h, buf_obj=masks)
            np.not_equal(masks, 0, out=valid[b])
    if nodata_input is not None and _representable(nodata_input, spec.dtype):
        if valid is None:
            valid = scratch.array(key + ".valid", (nb, h, w), bool)
            _not_value(data, nodata_input, valid)
        else:
            tmp = scratch.array(key + ".tmp", (nb, h, w), bool)
            _not_value(data, nodata_input, tmp)
            valid &= tmp
    return ix0 - x0, iy0 - y0, data, valid


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
    if len(set(nodata)) == 1:  # the usual case: one call for all bands
        _not_value(data, nodata[0], out)
    else:
        for b, nd in enumerate(nodata):
            _not_value(data[b], nd, out[b])
    return out


def _not_value(data, value, out):
    """out = data != value, with NaN meaning NaN; value is cast to data's type."""
    if value is None:
        out[...] = True
    elif isinstance(value, float) and math.isnan(value):
        np.isnan(data, out=out)
        np.logical_not(out, out=out)
    else:
        np.not_equal(data, data.dtype.type(value), out=out)
