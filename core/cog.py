"""COG output: GDAL's COG driver copies the finished partial to ``OUTPUT.cog.partial``.

With OVERVIEWS=FORCE_USE_EXISTING it only compresses: the overview levels are the
partial's (see :mod:`.pyramid`), so its options must match the plan's GeoTIFF ones.
"""

import os
import xml.etree.ElementTree as ET

from osgeo import gdal

from . import bandmeta, writer
from .gdalenv import GdalFailure, check, check_status


def cog_block(plan):
    """The COG's block side (BLOCKSIZE): the output's, at least 128."""
    return int(plan.creation_options.get("BLOCKSIZE", max(128, plan.block)))


def cog_options(plan, existing=False):
    """The COG driver's creation options matching the plan's GeoTIFF options
    (``existing``: the source's overviews are copied, not computed again)."""
    co = plan.creation_options
    allowed = {e.get("name") for e in ET.fromstring(
        gdal.GetDriverByName("COG").GetMetadataItem("DMD_CREATIONOPTIONLIST")).iter("Option")}
    result = {"BLOCKSIZE": str(cog_block(plan)),
              "RESAMPLING": bandmeta.overview_resampling(plan.band_meta),
              "OVERVIEWS": "FORCE_USE_EXISTING" if existing else "IGNORE_EXISTING"}
    for key, value in co.items():
        if key in allowed:
            result[key] = value
    return [f"{k}={v}" for k, v in result.items()]


def cog_partial_path(output):
    return output + ".cog.partial"


def make_cog(src, dst, plan, progress=None, cancel=None, existing=False, partial=None):
    """Copy the finished tiled GeoTIFF ``src`` to a Cloud Optimized GeoTIFF ``dst``
    (``existing``: with ``src``'s overviews, else with overviews the COG driver computes;
    ``partial``: the file whose size tells the space needed, when ``src`` is a VRT of it).

    On failure ``dst`` and the COG driver's temporary files are removed.
    """
    callback = writer.progress_callback(progress, cancel)
    box = []
    try:
        with writer.signals_deferred(callback):
            box.append(check(gdal.Translate, dst, src, format="COG",
                             creationOptions=cog_options(plan, existing), callback=callback))
            check_status(box[0].FlushCache)
            writer.close_checked(box)
    except KeyboardInterrupt:
        writer.close(box)
        _remove_cog(dst)
        raise
    except GdalFailure as exc:
        writer.close(box)
        # Before removing anything: the COG with its overviews and the driver's
        # temporary overview file take about 1.7 times a compressed partial; an
        # intermediate with its overviews holds more than the COG will.
        partial = partial or src
        size = os.path.getsize(partial) if os.path.exists(partial) else writer.MB
        error = writer.output_error(dst, exc, "writing the COG failed",
                                    size if existing else int(size * 1.7))
        _remove_cog(dst)
        if cancel and cancel():
            raise
        raise error from None


# The COG driver's temporary files beside its output (GDAL 3.6 - 3.10).
COG_TEMPORARY = (".ovr.tmp", ".msk.ovr.tmp")


def _remove_cog(dst):
    for path in (dst,) + tuple(dst + suffix for suffix in COG_TEMPORARY):
        writer.remove_file(path)


def remove_cog_partial(output):
    """Delete ``OUTPUT.cog.partial`` and the COG driver's temporary files, if any."""
    _remove_cog(cog_partial_path(output))
