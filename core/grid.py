"""The output grid: CRS, pixel size and extent, computed by GDAL itself.

The grid is what ``gdalbuildvrt`` would make of the inputs: :func:`compute`
builds a throw-away VRT in ``/vsimem/`` with GDAL's own resolution policy,
``-tr``, ``-tap`` and ``-te``, and keeps only its geotransform and size. Inputs
in another CRS take part through the extent and resolution GDAL's warper
suggests for them in the target CRS (what ``gdalwarp`` uses), so mixed-CRS
grids agree with ``gdalwarp -t_srs ... -tr ... -tap``.
"""

import math
import uuid
from dataclasses import dataclass

from osgeo import gdal, osr

from .errors import InputError, OptionError
from .gdalenv import GdalFailure, check, unlink_quiet
from .options import flag, parse_extent
from .sources import srs_from_user, srs_from_wkt


@dataclass(frozen=True)
class Grid:
    """A north-up output grid."""

    crs_wkt: str
    geotransform: tuple
    width: int
    height: int

    @property
    def res(self):
        """(pixel width, pixel height), both positive."""
        return self.geotransform[1], -self.geotransform[5]

    @property
    def bounds(self):
        gt = self.geotransform
        return (gt[0], gt[3] + self.height * gt[5], gt[0] + self.width * gt[1], gt[3])

    def pixel_bbox(self, bounds, margin=0):
        """Pixel range (x0, y0, x1, y1), clipped to the grid, that ``bounds`` touches.

        Returns None when the bounds miss the grid. ``margin`` widens the range
        by that many pixels on each side (before clipping).
        """
        gt = self.geotransform
        xmin, ymin, xmax, ymax = bounds
        x0 = math.floor((xmin - gt[0]) / gt[1] + 1e-6) - margin
        x1 = math.ceil((xmax - gt[0]) / gt[1] - 1e-6) + margin
        y0 = math.floor((gt[3] - ymax) / -gt[5] + 1e-6) - margin
        y1 = math.ceil((gt[3] - ymin) / -gt[5] - 1e-6) + margin
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def window_bounds(self, x0, y0, x1, y1):
        """Georeferenced bounds of a pixel range."""
        gt = self.geotransform
        return (gt[0] + x0 * gt[1], gt[3] + y1 * gt[5], gt[0] + x1 * gt[1], gt[3] + y0 * gt[5])


@dataclass(frozen=True)
class Footprint:
    """Where one input lands in the target CRS."""

    bounds: tuple        # xmin, ymin, xmax, ymax in the target CRS
    res: tuple           # its pixel size in the target CRS (suggested by the warper)
    same_crs: bool       # False: the input is reprojected


def target_srs(infos, options):
    """The target CRS as an osr.SpatialReference (None when inputs have no CRS)."""
    if options.target_crs not in (None, ""):
        if not infos[0].crs_wkt:
            raise OptionError(flag("target_crs"),
                              f"{infos[0].name} has no CRS to reproject from")
        return srs_from_user(options.target_crs)
    return srs_from_wkt(infos[0].crs_wkt)


def same_crs(a, b):
    """True when two CRS are the same for mosaicking purposes (or both absent)."""
    if a is None or b is None:
        return a is None and b is None
    return bool(a.IsSame(b, ["IGNORE_DATA_AXIS_TO_SRS_AXIS_MAPPING=YES",
                             "CRITERION=EQUIVALENT_EXCEPT_AXIS_ORDER_GEOGCRS"]))


def footprints_of(infos, target):
    """Each input's :class:`Footprint` in the target CRS (no pixels read)."""
    result = []
    target_wkt = target.ExportToWkt() if target is not None else None
    native = {}  # CRS WKT -> same as the target? (10,000 tiles share a handful)
    for info in infos:
        if info.crs_wkt not in native:
            native[info.crs_wkt] = same_crs(srs_from_wkt(info.crs_wkt), target)
        if native[info.crs_wkt]:
            result.append(Footprint(info.bounds, (info.geotransform[1], -info.geotransform[5]),
                                    True))
            continue
        name = f"/vsimem/streaming_mosaic/{uuid.uuid4().hex}.vrt"
        try:
            ds = check(gdal.Warp, name, info.path, format="VRT", dstSRS=target_wkt)
        except GdalFailure as exc:
            raise InputError(info.path, f"cannot be reprojected to the target CRS ({exc})") from None
        gt, w, h = ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize
        ds = None
        unlink_quiet(name)
        result.append(Footprint((gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]),
                                (gt[1], -gt[5]), False))
    return _snap_resolutions(result)


SNAP_TOLERANCE = 1e-3


def _snap_resolutions(footprints):
    """Give a reprojected input the pixel size of a native input within 0.1%.

    The warper suggests e.g. 9.99967 m for a 10 m tile of the neighbouring UTM
    zone (the projections' scale differs there); with RESOLUTION=highest that
    would put every native 10 m tile on an off-round grid and resample it for
    nothing.
    """
    native = {fp.res for fp in footprints if fp.same_crs}
    snapped = []
    for fp in footprints:
        if not fp.same_crs:
            for res in native:
                if all(abs(a - b) <= SNAP_TOLERANCE * b for a, b in zip(fp.res, res)):
                    fp = Footprint(fp.bounds, res, False)
                    break
        snapped.append(fp)
    return snapped


def extent_in_target(options, target):
    """EXTENT as (xmin, ymin, xmax, ymax) in the target CRS, or None."""
    option = flag("extent")
    bounds, crs_text = parse_extent(options.extent)
    if bounds is None:
        return None
    if options.extent_crs and crs_text and not same_crs(
            srs_from_user(options.extent_crs, option=option),
            srs_from_user(crs_text, option=option)):
        raise OptionError(option, f"gives its CRS as [{crs_text}] but the extent CRS is "
                          f"{options.extent_crs}; give one")
    crs_text = options.extent_crs or crs_text
    if not crs_text or target is None:
        return bounds
    src = srs_from_user(crs_text, option=option)
    if same_crs(src, target):
        return bounds
    try:
        tr = osr.CoordinateTransformation(src, target)
        xmin, ymin, xmax, ymax = tr.TransformBounds(*bounds, 21)
    except (RuntimeError, TypeError):
        raise OptionError(option, f"cannot transform {bounds} from {crs_text} to the target CRS") from None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise OptionError(option, f"cannot transform {bounds} from {crs_text} to the target CRS")
    return xmin, ymin, xmax, ymax


def compute(infos, options):
    """Compute the output grid and each input's footprint.

    Parameters
    ----------
    infos : list of SourceInfo
    options : Options
        Uses target_crs, resolution, pixel_size, target_aligned_pixels, extent
        and extent_crs.

    Returns
    -------
    (Grid, list of Footprint)

    Raises
    ------
    OptionError
        For an extent that misses every input, or a grid GDAL cannot build.
    """
    target = target_srs(infos, options)
    footprints = footprints_of(infos, target)
    target_wkt = target.ExportToWkt() if target is not None else ""
    bounds = extent_in_target(options, target)

    # GDAL's VRT builder computes the grid. Every input is represented by a tiny
    # one-band proxy with its footprint in the target CRS, so the builder sees
    # homogeneous sources (it skips inputs whose types or colour interpretations
    # differ) and reprojected inputs take part with their suggested footprint.
    pixel = options.pixel_size if options.pixel_size and options.pixel_size > 0 else None
    mode = options.resolution
    proxies = [_proxy(fp, target_wkt)
               for fp in _representatives(footprints, mode if pixel is None else "user")]

    kwargs = dict(bandList=[1], allowProjectionDifference=True, outputBounds=bounds)
    try:
        if pixel is None:
            kwargs["resolution"] = mode
            if options.target_aligned_pixels:
                # -tap needs an explicit -tr: take the resolution GDAL chose first.
                gt = _build(proxies, kwargs, bounds is not None)[0]
                kwargs.pop("resolution")
                kwargs.update(xRes=gt[1], yRes=-gt[5], targetAlignedPixels=True)
        else:
            kwargs.update(xRes=pixel, yRes=pixel,
                          targetAlignedPixels=bool(options.target_aligned_pixels))
        if bounds is None and "xRes" in kwargs and not all(fp.same_crs for fp in footprints):
            # With -tr, gdalwarp first rounds the union to whole pixels of the finest
            # suggested resolution: do the same so mixed-CRS grids match gdalwarp's.
            kwargs["outputBounds"] = _warp_union(footprints)
        gt, width, height = _build(proxies, kwargs, bounds is not None)
    finally:
        for name in proxies:
            unlink_quiet(name)

    grid = Grid(target_wkt, tuple(gt), width, height)
    if bounds is not None and not any(grid.pixel_bbox(fp.bounds) for fp in footprints):
        raise OptionError(flag("extent"),
                          f"{tuple(round(v, 6) for v in bounds)} does not overlap any input")
    return grid, footprints


def _proxy(fp, target_wkt):
    """A one-band /vsimem/ VRT with the footprint's bounds and resolution; returns its name."""
    name = f"/vsimem/streaming_mosaic/{uuid.uuid4().hex}.vrt"
    x0, y0, x1, y1 = fp.bounds
    w = max(1, round((x1 - x0) / fp.res[0]))
    h = max(1, round((y1 - y0) / fp.res[1]))
    proxy = gdal.GetDriverByName("VRT").Create(name, w, h, 1, gdal.GDT_Byte)
    proxy.SetGeoTransform((x0, fp.res[0], 0, y1, 0, -fp.res[1]))
    if target_wkt:
        proxy.SetProjection(target_wkt)
    proxy = None
    return name


def _representatives(footprints, mode):
    """The footprints that decide the grid, so 10,000 inputs need not all be proxies.

    The union extent is set by the inputs reaching the four extremes; the highest
    and lowest resolutions by the inputs having them. Only the average of
    different resolutions needs every input.
    """
    if mode == "average" and len({fp.res for fp in footprints}) > 1:
        return footprints
    keys = (lambda fp: fp.bounds[0], lambda fp: fp.bounds[1], lambda fp: -fp.bounds[2],
            lambda fp: -fp.bounds[3], lambda fp: fp.res[0], lambda fp: fp.res[1],
            lambda fp: -fp.res[0], lambda fp: -fp.res[1])
    chosen = sorted({min(range(len(footprints)), key=lambda i: key(footprints[i])) for key in keys})
    return [footprints[i] for i in chosen]


def _warp_union(footprints):
    """The footprints' union as gdalwarp makes it: whole pixels of the finest resolution."""
    xmin = min(fp.bounds[0] for fp in footprints)
    ymax = max(fp.bounds[3] for fp in footprints)
    rx = min(fp.res[0] for fp in footprints)
    ry = min(fp.res[1] for fp in footprints)
    nx = int((max(fp.bounds[2] for fp in footprints) - xmin) / rx + 0.5)
    ny = int((ymax - min(fp.bounds[1] for fp in footprints)) / ry + 0.5)
    return xmin, ymax - ny * ry, xmin + nx * rx, ymax


def _build(proxies, kwargs, user_extent=False):
    name = f"/vsimem/streaming_mosaic/{uuid.uuid4().hex}.vrt"
    option = flag("extent")
    try:
        ds = check(gdal.BuildVRT, name, proxies, **kwargs)
        result = ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize
        ds = None
    except GdalFailure as exc:
        if user_extent:
            raise OptionError(option, f"{kwargs.get('outputBounds')} gives no usable output grid, "
                              f"e.g. it is smaller than one pixel ({exc})") from None
        raise OptionError(flag("inputs"), "GDAL cannot build an output grid from these "
                          f"inputs ({exc})") from None
    finally:
        unlink_quiet(name)
    gt, w, h = result
    if w <= 0 or h <= 0:
        raise OptionError(option, "the output grid is empty")
    return result
