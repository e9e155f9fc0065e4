"""What each band's values mean, carried from the inputs to the output.

Per selected input band :func:`read` takes scale, offset, unit, description,
colour interpretation and colour table. :func:`combine` decides the output's:
what every input agrees on is carried; values that would be combined although
they mean different things (other scale, offset or unit; other colour tables
where a selection rule keeps palette indices) are refused with an
:class:`~.errors.InputError` naming both inputs, as gdalbuildvrt refuses them.
:func:`apply` writes the result to the output bands.
"""

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from osgeo import gdal

from . import geokeys
from .errors import InputError

# Rules whose result is one of the input values: palette indices stay indices.
SELECTING = {"last", "first", "min", "max"}
# Resamplings that blend neighbouring values (meaningless for palette indices).
BLENDING = {"bilinear", "cubic", "cubicspline", "lanczos", "average"}
# Output types a GeoTIFF colour table can describe.
PALETTE_TYPES = {"uint8", "uint16"}


@dataclass(frozen=True)
class BandMeta:
    """The meaning of one band's values (picklable, comparable)."""

    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    description: str = ""
    color: int = gdal.GCI_Undefined
    table: tuple = None  # ((r, g, b, a), ...) or None


def read(band, number, units=None):
    """The :class:`BandMeta` of band ``number`` (an open GDAL band); ``units`` as
    :func:`tiff_units` gives them, or None to ask GDAL."""
    table = band.GetColorTable()
    entries = None
    if table is not None:
        entries = tuple(tuple(table.GetColorEntry(i)) for i in range(table.GetCount()))
        entries = _TABLES.setdefault(entries, entries)
    scale, offset = band.GetScale(), band.GetOffset()
    unit = band.GetUnitType() if units is None else units.get(number - 1, "")
    return BandMeta(1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset),
                    unit or "", band.GetDescription() or "", band.GetColorInterpretation(),
                    entries)


# One tuple per distinct colour table: 10,000 paletted tiles share one in memory and pickles.
_TABLES = {}
GDAL_METADATA_TAG = 42112


def tiff_units(path):
    """{band index from 0: unit} from a plain GeoTIFF's GDAL_METADATA tag, or None
    when that cannot be read (then ask GDAL). GDAL's GetUnitType of a GeoTIFF band
    without a unit looks the CRS up (for a vertical unit): 2.4 ms a file, the whole
    scan of 10,000 tiles again."""
    found = geokeys.raw_tags(path, (GDAL_METADATA_TAG,))
    if found is None:
        return None
    units = {}
    for _tag, _kind, _order, data in found:
        try:
            root = ET.fromstring(data.rstrip(b"\0"))
        except ET.ParseError:
            return None
        for item in root.iter("Item"):
            if item.get("role") == "unittype" and (item.get("sample") or "").isdigit():
                units[int(item.get("sample"))] = item.text or ""
    return units


def _same_palette(a, b):
    """Tables agree when the shorter one is the start of the longer (an index past a
    table's end cannot occur in its input); returns the longer one, or False."""
    short, long_ = sorted((a, b), key=len)
    return long_ if long_[:len(short)] == short else False


def combine(sources, method, out_dtype, strict=True):
    """The output bands' :class:`BandMeta`, and warnings.

    Parameters
    ----------
    sources : list of SourceInfo
        With ``band_meta`` per selected band.
    method : str
        The compositing rule (``count`` carries only descriptions).
    out_dtype : str
    strict : bool
        When False (the plan algorithm), refusals become warnings.

    Raises
    ------
    InputError
        Naming two inputs whose values mean different things in one band.
    """
    warnings = []
    bands = min(len(s.band_meta) for s in sources)
    out = []
    for b in range(bands):
        try:
            meta, notes = _band(sources, b, method, out_dtype)
        except InputError as exc:
            if strict:
                raise
            meta, notes = BandMeta(), [str(exc)]
        out.append(meta)
        warnings.extend(n for n in notes if n not in warnings)
    return tuple(out), warnings


def _band(sources, b, method, out_dtype):
    first = sources[0]
    m0 = first.band_meta[b]
    notes = []
    agreed = {"unit": m0.unit, "description": m0.description, "color": m0.color,
              "table": m0.table}
    named = first if m0.unit else None  # the first input with a unit
    for info in sources[1:]:
        m = info.band_meta[b]
        if method != "count" and not (_close(m.scale, m0.scale) and _close(m.offset, m0.offset)):
            field = "scale" if not _close(m.scale, m0.scale) else "offset"
            raise _mixed(info, first, b, field, getattr(m, field), getattr(m0, field),
                         "unscale them first (gdal_translate -unscale -ot Float32)")
        if m.unit and named is not None and m.unit != named.band_meta[b].unit \
                and method != "count":
            raise _mixed(info, named, b, "unit", m.unit, named.band_meta[b].unit,
                         "set the same unit on both (gdal_edit -units) if that is right")
        named = named or (info if m.unit else None)
        if m.unit != agreed["unit"] and agreed["unit"] is not None:
            agreed["unit"] = None
            notes.append(f"the unit is not carried: {first.name} has {m0.unit or 'none'}, "
                         f"{info.name} {m.unit or 'none'}")
        if m.description != agreed["description"]:
            agreed["description"] = None
        if m.color != agreed["color"] and agreed["color"] is not None:
            agreed["color"] = None
            notes.append(f"the colour interpretation is not carried: {first.name} has "
                         f"{gdal.GetColorInterpretationName(m0.color)}, {info.name} "
                         f"{gdal.GetColorInterpretationName(m.color)}")
        agreed["table"] = _table(agreed["table"], m.table, first, info, method)
    meta = _result(m0, agreed, method, out_dtype, notes)
    return meta, notes if method != "count" else []


def _close(a, b):
    """Equal up to float32 rounding (some formats store scale and offset as float32)."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _mixed(info, other, b, field, value, other_value, advice):
    """The refusal of two inputs whose band ``b`` values mean different things."""
    show = (lambda v: repr(v)) if field == "unit" else (lambda v: f"{v:g}")
    return InputError(info.path, f"band {info.bands[b]} has {field} {show(value)} but "
                      f"{other.name} band {other.bands[b]} has {show(other_value)}: their "
                      f"values would be mixed as raw numbers; {advice}")


def _table(table, other, first, info, method):
    """The palette still shared after ``info``; False once they differ (allowed only
    for rules whose results are not palette indices anyway)."""
    if table is False or (table is None and other is None):
        return table
    same = table is not None and other is not None and _same_palette(table, other)
    if same:
        return same
    if method in SELECTING:
        what = (f"has no colour table but {first.name} has one" if other is None else
                f"has a colour table but {first.name} has none" if table is None else
                f"its colour table differs from {first.name}'s")
        raise InputError(info.path, f"{what}: palette indices of different palettes cannot "
                         "be combined; expand them to RGB first (gdal_translate -expand rgb) "
                         "or use METHOD=count")
    return False


def _result(m0, agreed, method, out_dtype, notes):
    table = agreed["table"]
    if table and (method not in SELECTING or out_dtype not in PALETTE_TYPES):
        why = (f"the output is {out_dtype}" if method in SELECTING else
               f"METHOD={method} does not give palette indices")
        notes.append(f"the inputs' colour table is not carried: {why}")
        table = None
    elif table is False and method != "count":
        notes.append(f"the inputs' colour tables differ and are not carried (METHOD={method} "
                     "does not give palette indices)")
    description = agreed["description"] or ""
    if method == "count":
        return BandMeta(description=description, color=gdal.GCI_GrayIndex)
    scale, offset = m0.scale, m0.offset
    if method == "sum" and offset != 0:
        notes.append(f"METHOD=sum adds raw values: the inputs' offset {offset:g} (and scale "
                     f"{scale:g}) are not carried")
        scale, offset = 1.0, 0.0
    color = agreed["color"]
    # An alpha interpretation would make readers take a data band for the output's mask.
    if color == gdal.GCI_AlphaBand or (color == gdal.GCI_PaletteIndex and not table):
        color = None
    if color is None:
        color = gdal.GCI_Undefined
    return BandMeta(scale, offset, agreed["unit"] or "", description, color,
                    table or None)


def paletted(sources):
    """The inputs with a colour table in a selected band."""
    return [s for s in sources if any(m.table for m in s.band_meta)]


def apply(ds, metas):
    """Set each output band's metadata (bands beyond ``metas``, like an alpha band,
    are left alone)."""
    for number, meta in enumerate(metas, start=1):
        band = ds.GetRasterBand(number)
        if (meta.scale, meta.offset) != (1.0, 0.0):
            band.SetScale(meta.scale)
            band.SetOffset(meta.offset)
        if meta.unit:
            band.SetUnitType(meta.unit)
        if meta.description:
            band.SetDescription(meta.description)
        if meta.table:
            table = gdal.ColorTable()
            for i, entry in enumerate(meta.table):
                table.SetColorEntry(i, entry)
            band.SetColorTable(table)
        elif meta.color != gdal.GCI_Undefined:
            band.SetColorInterpretation(meta.color)


def overview_resampling(metas):
    """NEAREST for a paletted output (averaged indices are other colours), else AVERAGE."""
    return "NEAREST" if any(m.table for m in metas) else "AVERAGE"
