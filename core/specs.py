"""How each input is read on the output grid: its :class:`SourceSpec`.

Every input gets one of three kinds of spec:

``direct``
    Same CRS and pixel size as the output, origin on a whole output pixel: the
    window is read straight from the file, no resampling, into a reused numpy
    buffer. This is the common case and the fast one.
``vrt``
    Same CRS, but its pixels do not line up with the output grid: read through
    a one-source VRT built by GDAL on the output grid (exactly the source
    rectangle ``gdalbuildvrt`` would write), with extra Byte bands saying where
    GDAL writes the source (:func:`_add_validity`), resampled the same way.
``warp``
    Another CRS, or a resampling only GDAL's warper does: read through a warped
    VRT (``gdalwarp -of VRT``) on the output grid, restricted to the input's
    footprint. Only the windows asked for are ever warped.

A pixel is valid where it is not its band's nodata value (when the type can
hold it), not masked by the input's mask band (``.msk`` or internal), and not
masked by its alpha band: all that apply. GDAL's resampling kernels skip the
pixels of the band's own GDAL mask only (the mask band, else nodata, else a
2- or 4-band file's alpha), so an input with more than one of these is given to
the warper through a VRT that turns them into one (:func:`_folded`).
"""

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from .errors import InputError
from .gdalenv import GdalFailure, check, vrt_xml
from .memory import WARP_MEMORY
from .options import RESAMPLINGS
from .sources import representable

# Resampling methods a VRT source can apply; others go through the warper.
# Not "average": GDAL 3.6 VRT sources average differently depending on the
# window read, so windowed results would depend on CHUNK_SIZE. Not "mode": GDAL
# 3.6 and 3.10 VRT sources disagree on it; the warper gives gdalwarp's result on both.
VRT_RESAMPLINGS = {"near", "bilinear", "cubic", "cubicspline", "lanczos"}
KERNELS = VRT_RESAMPLINGS - {"near"}

# Error (pixels) allowed to GDAL's approximate transformer. gdalwarp's default,
# 0.125, leaves room for a tool that cuts the output into other chunks to pick the
# neighbouring source pixel (0.3-1% of the pixels of a WGS 84 tile warped to UTM);
# 0.01 costs the same here (measured: 0.36 vs 0.37 s CPU for 3000x3000 px), exact
# transforms (0) cost 4.5x.
WARP_ERROR = 0.01


@dataclass(frozen=True)
class SourceSpec:
    """Everything a worker needs to read one input on the output grid (picklable).

    Validity is the AND of: ``nodata`` (a value per data band, or None), the
    file's GDAL mask bands (``mask``, direct only), the ``shared`` bands (valid
    where non-zero, for every data band) and each tuple of ``per_band`` bands
    (one band per data band, 0 for none).
    """

    index: int
    path: str
    kind: str           # direct, vrt or warp
    bbox: tuple         # x0, y0, x1, y1: grid pixels the input may touch
    origin: tuple       # grid pixel (x, y) of the opened dataset's pixel (0, 0)
    bands: tuple        # data band numbers of the opened dataset, in output order
    dtype: str
    nodata: tuple = ()  # per data band: value marking its holes, or None
    mask: str = "none"  # direct: the file's own mask: none, dataset or band
    shared: tuple = ()  # band numbers valid where non-zero, for all data bands
    per_band: tuple = ()  # tuples of one band number per data band (0: none)
    xml: str = None     # vrt/warp: the VRT document to open
    driver: str = ""    # direct: the driver that opened it when planned ("": any)
    block_rows: int = 0  # direct: rows of its blocks (tiles or strips), 0 when unknown


def _aligned(value):
    return abs(value - round(value)) < 1e-6


def effective_nodata(info):
    """Per selected band: its nodata value when its type can hold it, else None."""
    key = (tuple(map(repr, info.nodata)), info.dtype)  # repr: NaN is not equal to itself
    found = _EFFECTIVE.get(key)
    if found is None:
        found = tuple(nd if representable(nd, info.dtype) else None for nd in info.nodata)
        _EFFECTIVE[key] = found
    return found


# Inputs share a few (nodata, type) pairs: 10,000 tiles ask for one.
_EFFECTIVE = {}


def _mask_kind(info):
    return "band" if info.mask_per_band else "dataset" if info.mask_per_dataset else "none"


def _parts(info):
    """How many of nodata, mask band and alpha band the input has."""
    return (any(nd is not None for nd in effective_nodata(info))
            + (_mask_kind(info) != "none") + bool(info.alpha_band))


def _native(info):
    """True when GDAL's own mask of the bands is the input's whole validity (nodata
    only, a mask only, or a 2- or 4-band file's alpha only), so GDAL's VRT kernels
    skip exactly the invalid pixels."""
    return _parts(info) <= 1 and (info.alpha_mask or not info.alpha_band)


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
        if gdal_resampling == "near" or (gdal_resampling in VRT_RESAMPLINGS and _native(info)):
            return _vrt_spec(info, grid, bbox, gdal_resampling)
    bbox = grid.pixel_bbox(footprint.bounds, margin=margin)
    if bbox is None:
        return None
    return _warp_spec(info, grid, bbox, gdal_resampling, footprint.res)


def _direct_spec(info, grid, origin):
    x0, y0 = origin
    bbox = (max(x0, 0), max(y0, 0), min(x0 + info.width, grid.width),
            min(y0 + info.height, grid.height))
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        return None
    return SourceSpec(info.index, info.path, "direct", bbox, origin, info.bands, info.dtype,
                      nodata=effective_nodata(info), mask=_mask_kind(info),
                      shared=(info.alpha_band,) if info.alpha_band else (),
                      driver=getattr(info, "driver", ""),
                      block_rows=int(getattr(info, "block", (0, 0))[1]))


@dataclass(frozen=True)
class _Source:
    """What the VRT or warped VRT reads: the file, or a VRT over it."""

    path: str           # file name or VRT document
    bands: tuple        # its data bands, in output order
    alpha: int          # its alpha band, or 0
    nodata: tuple       # per data band: the nodata value it carries (representable), or None
    mask: str           # its GDAL mask to apply: none, dataset or band


def _file_source(info):
    return _Source(info.path, info.bands, info.alpha_band, effective_nodata(info),
                   _mask_kind(info))


def _folded(info):
    """A VRT over the input whose GDAL mask is its whole validity, for the warper.

    With nodata on every band, a VRT with the same nodata whose pixels are nodata
    where the mask or alpha band is 0 (GDAL's warper skips nodata); else (or for
    64-bit integers, which GDAL 3.6 VRT sources round through float32) the data
    bands without nodata and a <MaskBand> that is the mask and alpha together (the
    warper skips it; nodata is then tested on the warped values).
    """
    nodata, mask = effective_nodata(info), _mask_kind(info)
    masked = _masked_vrt(info, mask)
    dtype = np.dtype(info.dtype)
    if None in nodata or (dtype.kind in "iu" and dtype.itemsize == 8):
        count = len(info.bands)
        return _Source(masked, tuple(range(1, count + 1)), 0, (None,) * count,
                       "band" if mask == "band" else "dataset")
    root = ET.fromstring(masked)
    for number, (band, nd) in enumerate(zip(root.findall("VRTRasterBand"), nodata), 1):
        for child in list(band):
            if child.tag in ("SimpleSource", "ComplexSource", "MaskBand", "NoDataValue"):
                band.remove(child)
        ET.SubElement(band, "NoDataValue").text = _xml_number(nd)
        # Copied where the masked VRT's mask is non-zero; the rest keeps the nodata.
        src = ET.SubElement(band, "ComplexSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = masked
        ET.SubElement(src, "SourceBand").text = str(number)
        ET.SubElement(src, "UseMaskBand").text = "true"
    for child in root.findall("MaskBand"):
        root.remove(child)
    return _Source(ET.tostring(root, "unicode"), tuple(range(1, len(nodata) + 1)), 0,
                   nodata, "none")


def _masked_vrt(info, mask):
    """The input's data bands in a VRT without nodata whose GDAL mask is the input's
    mask band and alpha band together (their product)."""
    root = _vrt_of(info, list(info.bands))
    data = root.findall("VRTRasterBand")
    for band in data:
        for child in band.findall("NoDataValue"):
            band.remove(child)
    alpha = [str(info.alpha_band)] if info.alpha_band else []
    if mask == "band":
        for band, number in zip(data, info.bands):
            band.append(_mask_band(band, [f"mask,{number}"] + alpha))
    else:
        parts = ([f"mask,{info.bands[0]}"] if mask == "dataset" else []) + alpha
        root.append(_mask_band(data[0], parts))
    return ET.tostring(root, "unicode")


def _mask_band(template, source_bands):
    """A <MaskBand> reading ``source_bands`` of the template band's source (their
    product when several: 0 where any is 0)."""
    element = ET.Element("MaskBand")
    band = ET.SubElement(element, "VRTRasterBand", dataType="Byte")
    if len(source_bands) > 1:
        band.set("subClass", "VRTDerivedRasterBand")
        ET.SubElement(band, "PixelFunctionType").text = "mul"
    for source_band in source_bands:
        band.append(_band_source(template, source_band))
    return element


def _band_source(template, source_band):
    """A SimpleSource reading ``source_band`` through the template band's rectangles."""
    src = copy.deepcopy(_source_of(template))
    for name in ("NODATA", "UseMaskBand", "ScaleOffset", "ScaleRatio", "LUT",
                 "SourceProperties"):
        for child in src.findall(name):
            src.remove(child)  # a mask or alpha band is Byte, whatever the data type
    src.tag = "SimpleSource"
    src.find("SourceBand").text = source_band
    return src


def _vrt_of(info, band_list):
    """A VRT (XML tree) reading the given bands of the input as they are: each band
    one source on the input itself (not on what a VRT input refers to, whose masks
    are not the input's), with its type, nodata and colour, and no mask."""
    try:
        sel = check(gdal.Translate, "", info.path, format="VRT", bandList=band_list)
        xml = vrt_xml(sel)
        sel = None
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be read through a VRT ({exc})") from None
    root = ET.fromstring(xml)
    bands = root.findall("VRTRasterBand")
    for parent in [root] + bands:
        for child in parent.findall("MaskBand"):
            parent.remove(child)
    for band, number in zip(bands, band_list):
        for child in list(band):
            if child.tag.endswith("Source"):
                band.remove(child)
        src = ET.SubElement(band, "SimpleSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = info.path
        ET.SubElement(src, "SourceBand").text = str(number)
    return root


def _source_of(band):
    src = band.find("SimpleSource")
    return src if src is not None else band.find("ComplexSource")


def _xml_number(value):
    if isinstance(value, float) and value != value:
        return "nan"
    return str(value) if isinstance(value, int) else repr(float(value))


def _vrt_spec(info, grid, bbox, resampling):
    """A one-source VRT on the whole grid, as gdalbuildvrt lays the source out."""
    src = _file_source(info)
    try:
        ds = check(gdal.BuildVRT, "", [src.path], outputBounds=grid.bounds,
                   xRes=grid.res[0], yRes=grid.res[1], bandList=list(src.bands),
                   srcNodata="None", VRTNodata="None", resampleAlg=resampling,
                   allowProjectionDifference=True)
        xml = vrt_xml(ds)
        ds = None
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be laid out on the output grid ({exc})") from None
    root = ET.fromstring(xml)
    shared, per_band = _add_validity(root, src)
    return SourceSpec(info.index, info.path, "vrt", bbox, (0, 0),
                      tuple(range(1, len(src.bands) + 1)), info.dtype,
                      nodata=src.nodata, shared=shared, per_band=per_band,
                      xml=ET.tostring(root, "unicode"))


def _add_validity(root, src):
    """Append Byte bands that are non-zero exactly where GDAL writes the source into a
    gdalbuildvrt mosaic: read through the same rectangles with the same resampling,
    so a pixel next to a hole or an edge is valid when GDAL's kernel finds valid
    neighbours. Returns (shared, per_band) band numbers."""
    data = root.findall("VRTRasterBand")
    shared, per_band = [], []
    if any(nd is not None for nd in src.nodata):
        # gdalbuildvrt's ComplexSource with <NODATA>: written where the resampled
        # value is not nodata (GDAL's kernels skip nodata and never return it).
        per_band.append(tuple(_add_band(root, band, nodata=nd) if nd is not None else 0
                              for band, nd in zip(data, src.nodata)))
    if src.mask == "band":
        per_band.append(tuple(_add_band(root, band, f"mask,{number}")
                              for band, number in zip(data, src.bands)))
    elif src.mask == "dataset":
        shared.append(_add_band(root, data[0], f"mask,{src.bands[0]}"))
    if src.alpha:
        shared.append(_add_band(root, data[0], str(src.alpha)))
    if not shared and (not per_band or 0 in per_band[0]):
        shared.append(_add_band(root, data[0]))  # where the source is at all
    return tuple(shared), tuple(per_band)


def _add_band(root, template, source_band=None, nodata=None):
    """Append a Byte band reading the template band's source through the same
    rectangles and resampling; return its number. The band is non-zero where
    ``source_band`` ("mask,1", "4") of the source is; with ``nodata``, 255 where the
    source's value is not ``nodata``; with neither, 255 wherever the source is."""
    number = len(root.findall("VRTRasterBand")) + 1
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(number))
    if source_band is not None:
        band.append(_band_source(template, source_band))
        return number
    src = copy.deepcopy(_source_of(template))
    for name in ("NODATA", "UseMaskBand", "ScaleOffset", "ScaleRatio", "LUT"):
        for child in src.findall(name):
            src.remove(child)
    # Scaling by 0 writes 255 over the source's rectangle (without <NODATA>, without
    # reading it: gdalbuildvrt -addalpha's trick).
    src.tag = "ComplexSource"
    ET.SubElement(src, "ScaleOffset").text = "255"
    ET.SubElement(src, "ScaleRatio").text = "0"
    if nodata is not None:
        ET.SubElement(src, "NODATA").text = _xml_number(nodata)
    band.append(src)
    return number


def warp_scale(src_res, dst_res):
    """The warper's kernel scale for one axis (GDAL's own rule, gdalwarpkernel.cpp).

    GDAL computes it per chunk from the chunk's source window, so a kernel's width,
    hence the pixels, would depend on how the output is cut into windows: it is
    fixed once per input instead (warp options XSCALE and YSCALE).
    """
    scale = src_res / dst_res
    if scale < 1:
        n = round(1 / scale)
        if abs(1 / scale - n) < 0.05:
            scale = 1 / n
    return scale


def _warp_spec(info, grid, bbox, resampling, src_res):
    """A warped VRT covering ``bbox`` of the grid: gdalwarp's pixels, valid where
    gdalwarp -dstnodata writes them (-dstalpha for bands without nodata)."""
    x0, y0, x1, y1 = bbox
    # The warper skips nodata and alpha itself, a per-dataset mask only alone.
    src = _file_source(info) if _parts(info) <= 1 else _folded(info)
    path, extras = _warp_source(info, src)
    nb = len(src.bands)
    options = dict(warpOptions=[])
    if any(nd is not None for nd in src.nodata):
        # A band's own nodata marks its holes: keep them nodata (not 0) so they
        # stay invalid per band, as gdalwarp writes them.
        values = list(src.nodata) + [None] * len(extras)
        options = dict(dstNodata=" ".join("None" if nd is None else _xml_number(nd)
                                          for nd in values),
                       warpOptions=["INIT_DEST=NO_DATA"])
    elif src.path == info.path and any(nd is not None for nd in info.nodata):
        options["srcNodata"] = "None"  # a value the type cannot hold matches nothing
    if resampling in KERNELS:
        options["warpOptions"] += [f"XSCALE={warp_scale(src_res[0], grid.res[0])!r}",
                                   f"YSCALE={warp_scale(src_res[1], grid.res[1])!r}"]
    alpha = None in src.nodata  # where bands without nodata are valid
    try:
        ds = check(gdal.Warp, "", path, format="VRT", dstSRS=grid.crs_wkt,
                   outputBounds=grid.window_bounds(x0, y0, x1, y1),
                   xRes=grid.res[0], yRes=grid.res[1], resampleAlg=resampling,
                   dstAlpha=alpha, warpMemoryLimit=WARP_MEMORY, multithread=False,
                   errorThreshold=WARP_ERROR, **options)
        xml = vrt_xml(ds)
        count = ds.RasterCount
        ds = None
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be reprojected to the output grid ({exc})") from None
    return SourceSpec(info.index, info.path, "warp", bbox, (x0, y0), tuple(range(1, nb + 1)),
                      info.dtype, nodata=effective_nodata(info),
                      shared=(count,) if alpha else (),
                      per_band=(tuple(nb + i for i in range(1, len(extras) + 1)),)
                      if extras else (), xml=xml)


def _warp_source(info, src):
    """What the warper reads, and the band masks it would ignore.

    The warper applies nodata, an alpha band (the source's last band) and a
    per-dataset mask itself, but not per-band masks: those are carried as extra
    Byte bands (before the alpha band), warped like the data. Returns (file name
    or VRT document, the extra bands' source bands).
    """
    all_data = tuple(b for b in range(1, info.band_count + 1) if b != info.alpha_band)
    extras = tuple(f"mask,{b}" for b in src.bands) if src.mask == "band" else ()
    if src.path == info.path and not extras and tuple(src.bands) == all_data \
            and src.alpha in (0, info.band_count):
        return src.path, ()
    if src.path != info.path:
        root = ET.fromstring(src.path)
    else:
        root = _vrt_of(info, list(src.bands) + ([src.alpha] if src.alpha else []))
    bands = root.findall("VRTRasterBand")
    data, alpha = bands[:len(src.bands)], bands[len(src.bands):]
    for band in alpha:
        root.remove(band)
    for band, source_band in zip(data, extras):
        _add_band(root, band, source_band)
    if src.path == info.path and src.mask == "dataset":
        root.append(_mask_band(data[0], [f"mask,{src.bands[0]}"]))  # the warper applies it
    for band in alpha:
        root.append(band)
    for number, band in enumerate(root.findall("VRTRasterBand"), 1):
        band.set("band", str(number))
    return ET.tostring(root, "unicode"), extras
