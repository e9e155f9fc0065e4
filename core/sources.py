"""Open the inputs read-only and describe them: size, georeferencing, bands, nodata, masks.

Nothing here reads pixels. :func:`scan` returns one :class:`SourceInfo` per
input, in input order, or raises :class:`~.errors.InputError` naming the first
input that cannot take part.
"""

import contextlib
import math
import os
import stat
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, gdal_array, osr

from . import bandmeta
from .errors import InputError, OptionError
from .gdalenv import GdalFailure, open_readonly
from .geokeys import cached_crs_wkt
from .inputfiles import files_read
from .lookalike import Lookalikes
from .options import flag
from .storage import check_input, expand_inputs

# GDAL types the core handles, as numpy dtypes.
SUPPORTED = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "uint32", "int32",
                                   "uint64", "int64", "float32", "float64")}

# GDAL >= 3.5 has 64-bit integer bands, whose nodata is read exactly as an integer.
_NODATA_64 = {getattr(gdal, "GDT_Int64", None): "GetNoDataValueAsInt64",
              getattr(gdal, "GDT_UInt64", None): "GetNoDataValueAsUInt64"}
_NODATA_64.pop(None, None)


def representable(value, dtype):
    """True when ``value`` can be a pixel of ``dtype``, so can mean nodata there.

    As in GDAL, a nodata value the type cannot hold (-9999 for Byte, 0.5 for an
    integer type, 1e300 for Float32) matches no pixel; NaN is representable in
    floating-point types only. None is never representable.
    """
    if value is None:
        return False
    dtype = np.dtype(dtype)
    if isinstance(value, float) and math.isnan(value):
        return dtype.kind == "f"
    if dtype.kind == "f":
        return abs(value) <= np.finfo(dtype).max
    if value != math.floor(value):
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def band_nodata(band):
    """The nodata value of a band: an int for 64-bit integer bands (exact), else a float,
    or None."""
    getter = _NODATA_64.get(band.DataType)
    if getter is None:
        return band.GetNoDataValue()
    return getattr(band, getter)()


@dataclass(frozen=True)
class SourceInfo:
    """What the planner needs to know of one input (no pixels)."""

    index: int
    path: str
    width: int
    height: int
    geotransform: tuple
    crs_wkt: str              # '' when the input has no CRS
    band_count: int           # bands in the file
    bands: tuple              # 1-based numbers of the bands taking part, in output order
    alpha_band: int           # 1-based alpha band number, or 0
    dtype: str                # numpy name of the common type of the selected bands
    nodata: tuple             # per selected band: float (int for 64-bit types) or None,
                              # as stored in the file, representable or not
    mask_per_dataset: bool    # GDAL's mask is one mask shared by all bands (.msk or
                              # internal), not derived from nodata or the alpha band
    mask_per_band: bool       # GDAL's mask is each band's own mask band
    files: tuple              # (absolute name, size, mtime_ns, etag) of every file it reads
    band_meta: tuple = ()     # per selected band: bandmeta.BandMeta (scale, unit, palette...)
    alpha_mask: bool = False  # GDAL's mask of the bands is the alpha band (2 or 4 bands)
    driver: str = ""          # the GDAL driver that opened it (reopened with it alone)
    block: tuple = (0, 0)     # block (tile or strip) size of its first selected band

    @property
    def bounds(self):
        """(xmin, ymin, xmax, ymax) in the input's CRS."""
        gt = self.geotransform
        x0, x1 = gt[0], gt[0] + self.width * gt[1]
        y0, y1 = gt[3], gt[3] + self.height * gt[5]
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    @property
    def name(self):
        return os.path.basename(self.path.rstrip("/")) or self.path


def describe(index, path, bands=None):
    """Open one input read-only and return its :class:`SourceInfo`.

    Parameters
    ----------
    index : int
        Position of the input in the input list.
    path : str
        File name or GDAL connection string.
    bands : tuple of int, optional
        Band numbers to keep (BANDS); default: every band but an alpha band.

    Raises
    ------
    InputError
        When the input is missing, not a raster, not georeferenced, rotated,
        of an unsupported type, or lacks a requested band.
    """
    return _describe_checked(index, *_checked_path(path), bands=bands)


def _checked_path(path):
    """(the input's name, absolute for a local file; a remote input's ETag or None);
    refused when empty or a folder."""
    path = str(path)
    if not path:
        raise InputError("(empty name)", "an input has no file name")
    mode = None
    if not path.startswith("/vsi"):
        try:
            mode = os.stat(path).st_mode  # one stat for "exists" and "is a folder"
        except (OSError, ValueError):
            pass
    if mode is not None:
        path = os.path.abspath(path)
        if stat.S_ISDIR(mode):
            raise InputError(path, "is a folder, not a raster file")
    etag = check_input(path)  # a remote input: one HEAD, and a clear line when refused
    return path, etag


def _describe_checked(index, path, etag=None, bands=None):
    with _damage_reports() as damage:
        try:
            ds = open_readonly(path)
        except GdalFailure as exc:
            if not os.path.exists(path) and gdal.VSIStatL(path) is None:
                raise InputError(path, "file does not exist") from None
            raise InputError(path, f"not a raster GDAL can read ({exc})") from None
        try:
            info = _describe_open(index, path, ds, bands, etag)
        except RuntimeError as exc:  # GDAL's exception mode: a failure while reading the header
            damage.append(str(exc))
        finally:
            ds = None
    if damage:
        raise InputError(path, f"is damaged or not readable as a whole ({damage[0]})")
    return info


# libtiff says this of a tag it could not read: a nodata value, GeoKeys or the pixel
# size may then silently be missing, so the file is refused rather than half-read.
_DAMAGE_WARNINGS = ("tag ignored", "being ignored")


@contextlib.contextmanager
def _damage_reports():
    """Collect GDAL's failures (and warnings of ignored tags) in this thread into a list.

    In GDAL's exception mode a failure raises; in the default mode GDAL only
    reports it and carries on (e.g. with a CRS or nodata value dropped), so the
    reports are what tell a damaged header in both modes.
    """
    found = []

    def handler(level, _number, message):
        message = " ".join(str(message).split())
        if level >= gdal.CE_Failure or any(w in message for w in _DAMAGE_WARNINGS):
            found.append(message)

    gdal.PushErrorHandler(handler)
    try:
        yield found
    finally:
        gdal.PopErrorHandler()


def _describe_open(index, path, ds, bands, etag=None):
    if ds.RasterCount == 0:
        raise InputError(path, "has no raster bands")
    gt = _north_up_geotransform(path, ds)
    alpha, selected = _selected_bands(path, ds, bands)
    dtypes, nodata, metas = [], [], []
    units = bandmeta.tiff_units(path)
    per_dataset = per_band = alpha_mask = False
    for b in selected:
        band = ds.GetRasterBand(b)
        dtypes.append(_band_dtype(path, band, b))
        nodata.append(band_nodata(band))
        metas.append(bandmeta.read(band, b, units))
        flags = band.GetMaskFlags()
        alpha_mask |= bool(flags & gdal.GMF_ALPHA)
        if flags & (gdal.GMF_NODATA | gdal.GMF_ALPHA) or flags == gdal.GMF_ALL_VALID:
            continue  # the alpha band is applied as alpha_band
        if flags & gdal.GMF_PER_DATASET:
            per_dataset = True
        else:
            per_band = True

    def crs_of_dataset():
        srs = ds.GetSpatialRef()
        wkt = srs.ExportToWkt() if srs is not None else ""
        # GDAL hands back bytes when a CRS name is not UTF-8 (e.g. Latin-1 from old writers).
        return wkt.decode("latin-1") if isinstance(wkt, bytes) else wkt

    return SourceInfo(
        index=index, path=path, width=ds.RasterXSize, height=ds.RasterYSize,
        geotransform=gt, crs_wkt=cached_crs_wkt(path, crs_of_dataset),
        band_count=ds.RasterCount, bands=selected, alpha_band=alpha, dtype=np.result_type(*dtypes).name,
        nodata=tuple(nodata), mask_per_dataset=per_dataset, mask_per_band=per_band,
        files=files_read(path, ds, etag), band_meta=tuple(metas), alpha_mask=alpha_mask,
        driver=_driver_name(ds), block=tuple(ds.GetRasterBand(selected[0]).GetBlockSize()))


def _driver_name(ds):
    driver = ds.GetDriver()
    return driver.ShortName if driver is not None else ""


def _north_up_geotransform(path, ds):
    """The dataset's geotransform; refused unless north-up with a valid pixel size."""
    gt = tuple(ds.GetGeoTransform(can_return_null=True) or ())
    if not gt:
        raise InputError(path, "has no georeferencing (no geotransform)")
    if gt[2] != 0 or gt[4] != 0:
        raise InputError(path, "has a rotated or sheared geotransform; warp it north-up first")
    if gt[1] <= 0 or gt[5] == 0:
        raise InputError(path, "has an invalid pixel size in its geotransform")
    if gt[5] > 0:
        raise InputError(path, "is south-up (positive pixel height); warp it north-up first")
    return gt


def _selected_bands(path, ds, bands):
    """(alpha band number or 0, the data bands BANDS selects: all but the alpha by default)."""
    alpha = 0
    for b in range(1, ds.RasterCount + 1):
        if ds.GetRasterBand(b).GetColorInterpretation() == gdal.GCI_AlphaBand:
            alpha = b
    if bands is None:
        selected = tuple(b for b in range(1, ds.RasterCount + 1) if b != alpha)
        if not selected:
            raise InputError(path, "has only an alpha band")
        return alpha, selected
    for b in bands:
        if b > ds.RasterCount:
            raise InputError(path, f"has no band {b} (it has {ds.RasterCount}); check BANDS")
        if b == alpha:
            raise InputError(path, f"band {b} is its alpha band, used as the mask; "
                             "leave it out of BANDS")
    return alpha, tuple(bands)


def _band_dtype(path, band, number):
    """The numpy type of a band (GDAL's signed-byte flag honoured); refused if unsupported."""
    code = gdal_array.GDALTypeCodeToNumericTypeCode(band.DataType)
    dtype = np.dtype(code) if code is not None else None
    if dtype is None or dtype not in SUPPORTED:
        raise InputError(path, f"band {number} has type {gdal.GetDataTypeName(band.DataType)}, "
                         "which the mosaic does not support")
    if dtype == np.uint8 and band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE":
        dtype = np.dtype("int8")
    return dtype


def describe_all(paths, bands=None):
    """:func:`describe` every input, in input order (the first failure is reported).

    Look-alike GeoTIFF tiles are described once (:mod:`.lookalike`). Sequential on
    purpose: a description is ~20 short GDAL calls, and threads only fought over
    the GIL (10,000 inputs: 0.9 s alone, 1.3-1.5 s on 2-8 threads).
    """
    lookalikes = Lookalikes(lambda i, p, etag: _describe_checked(i, p, etag, bands))
    return [lookalikes(i, *_checked_path(p)) for i, p in enumerate(paths)]


def scan(paths, bands=None, strict=True):
    """Describe every input and check they can be mosaicked together.

    Parameters
    ----------
    strict : bool
        When False (the plan algorithm), inputs whose band count differs from
        the first input's are reported as warnings instead of an error.

    Returns
    -------
    (list of SourceInfo, list of str)
        The inputs, and warnings (only when not strict).

    Raises
    ------
    OptionError
        When there are no inputs.
    InputError
        Naming the first input that is unreadable or whose band count or CRS
        presence differs from the first input's.
    """
    paths = expand_inputs(paths)
    if not paths:
        raise OptionError(flag("inputs"), "no input rasters given")
    infos = describe_all(paths, bands)
    warnings = []
    first = infos[0]
    for info in infos[1:]:
        if len(info.bands) != len(first.bands):
            error = InputError(info.path, f"has {len(info.bands)} data band(s) but "
                               f"{first.name} has {len(first.bands)}; choose common bands "
                               "with BANDS")
            if strict:
                raise error
            if not warnings:
                warnings.append(f"band counts differ: {error}")
        if bool(info.crs_wkt) != bool(first.crs_wkt):
            missing = info if not info.crs_wkt else first
            raise InputError(missing.path, "has no CRS while other inputs have one; "
                             "assign one first")
    return infos, warnings


def srs_from_wkt(wkt):
    """An osr.SpatialReference with traditional GIS axis order, or None for ''."""
    if not wkt:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def crs_label(wkt, none="none"):
    """A short name for a CRS: ``EPSG:32633``, else its name; ``none`` for no CRS."""
    srs = srs_from_wkt(wkt)
    if srs is None:
        return none
    code = srs.GetAuthorityCode(None)
    return f"{srs.GetAuthorityName(None)}:{code}" if code else srs.GetName()


def srs_from_user(text, option=None):
    """Parse a CRS given as EPSG:xxxx, WKT, PROJ string... into an osr.SpatialReference."""
    option = option or flag("target_crs")
    srs = osr.SpatialReference()
    try:
        err = srs.SetFromUserInput(str(text))
    except RuntimeError:
        err = 1
    if err != 0:
        raise OptionError(option, f"{text!r} is not a CRS GDAL understands")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs
