"""ORDER: the stacking order of the inputs (as given, by date, by name, by pixel size).

Applied at plan time to the scanned inputs, so the grid, the log and the
checkpoint (whose fingerprint lists the inputs in order) all see the result.
Sorting is stable: inputs that tie keep the order they were given in.
"""

import dataclasses
import datetime
import re

from .errors import InputError
from .gdalenv import GdalFailure, open_readonly

ORDERS = ("input", "date", "name", "resolution")

# Metadata items holding the acquisition date, most specific first (GDAL's names for
# TIFF tags, its IMAGERY domain, and the keys of the Sentinel and Landsat drivers).
DATE_KEYS = ("ACQUISITIONDATETIME", "SENSING_TIME", "PRODUCT_START_TIME",
             "DATATAKE_1_DATATAKE_SENSING_START", "DATE_ACQUIRED", "ACQUISITION_DATE",
             "TIFFTAG_DATETIME")
DOMAINS = ("", "IMAGERY")

# YYYY-MM-DD or YYYY:MM:DD or YYYYMMDD, optionally followed by a time.
_METADATA_DATE = re.compile(r"(\d{4})[-:]?(\d{2})[-:]?(\d{2})"
                            r"(?:[ T](\d{2}):?(\d{2}):?(\d{2}))?")
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})"
                        r"(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")


def _date(year, month, day, hour=None, minute=None, second=None):
    try:
        return datetime.datetime(int(year), int(month), int(day), int(hour or 0),
                                 int(minute or 0), int(second or 0))
    except ValueError:
        return None  # not a calendar date (e.g. an orbit or tile number)


def date_from_metadata(items):
    """The acquisition date in a ``{key: value}`` metadata dict, or None."""
    for key in DATE_KEYS:
        value = items.get(key)
        match = _METADATA_DATE.search(value or "")
        if match:
            found = _date(*match.groups())
            if found:
                return found
    return None


def date_from_name(name):
    """The first calendar date in a file name (YYYYMMDD, YYYY-MM-DD, YYYYMMDDTHHMMSS), or None."""
    for match in _NAME_DATE.finditer(name):
        year, _sep, month, day, *time = match.groups()
        found = _date(year, month, day, *time)
        if found:
            return found
    return None


def acquisition_date(info):
    """The acquisition date of an input: from its metadata, else from its file name.

    Raises
    ------
    InputError
        When neither holds a date.
    """
    try:
        ds = open_readonly(info.path)
    except GdalFailure as exc:
        raise InputError(info.path, f"cannot be opened ({exc})") from None
    items = {}
    for domain in DOMAINS:
        items.update({k.upper(): v for k, v in (ds.GetMetadata(domain) or {}).items()
                      if k.upper() not in items})
    ds = None
    found = date_from_metadata(items) or date_from_name(info.name)
    if found is None:
        raise InputError(info.path, "has no acquisition date for ORDER=date (no "
                         "TIFFTAG_DATETIME, ACQUISITIONDATETIME or similar metadata, and no "
                         "YYYYMMDD date in its name)")
    return found


def _pixel_area(info):
    gt = info.geotransform
    return abs(gt[1] * gt[5] - gt[2] * gt[4])


def apply(order, sources):
    """Sort the scanned inputs by ``order`` (stable) and renumber them in their new order.

    Parameters
    ----------
    order : str
        One of :data:`ORDERS`.
    sources : list of SourceInfo

    Returns
    -------
    list of SourceInfo
    """
    if order == "input":
        return sources
    if order == "date":
        keys = [acquisition_date(s) for s in sources]
    elif order == "name":
        keys = [s.name for s in sources]
    else:  # resolution: coarsest first, so the finest is on top with METHOD=last
        keys = [-_pixel_area(s) for s in sources]
    ranked = sorted(range(len(sources)), key=lambda i: keys[i])
    return [dataclasses.replace(sources[i], index=k) for k, i in enumerate(ranked)]
