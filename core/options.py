"""The single declaration of every mosaic parameter, and the typed options it fills.

:data:`PARAMS` lists each parameter once: its contract name (``METHOD``), the
attribute of :class:`Options` it fills (``method``), its kind, default, help
text, enum choices (name and display label, in contract order), whether it is
optional or advanced, and its CLI flag. The QGIS algorithms and the CLI's
argparse are generated from this table; nothing else repeats it.

Enum options are names everywhere in the core (``method="feather"``); only the
QGIS glue knows the contract's index numbers, and turns them into names with
:func:`enum_name` at the edge.
"""

import dataclasses
import math
from dataclasses import dataclass

from .composite import RULES, Rule
from .errors import OptionError
from .order import ORDERS

METHODS = tuple(RULES)  # the compositing rules' table is the one list of METHOD names

# Same order as QGIS's GDAL warp algorithm; the second item is GDAL's name.
RESAMPLINGS = (
    ("nearest", "near"), ("bilinear", "bilinear"), ("cubic", "cubic"),
    ("cubicspline", "cubicspline"), ("lanczos", "lanczos"), ("average", "average"),
    ("mode", "mode"), ("max", "max"), ("min", "min"), ("median", "med"),
    ("q1", "q1"), ("q3", "q3"),
)

RESOLUTIONS = ("highest", "lowest", "average")

# Same order as QGIS's GDAL translate algorithm (0 = keep the input type).
DATA_TYPES = ("same", "uint8", "int16", "uint16", "uint32", "int32", "float32", "float64")

COMPRESSIONS = ("lzw", "deflate", "zstd", "none")

HARMONIZATIONS = ("none", "gain", "linear")


@dataclass(frozen=True)
class Param:
    """One parameter of the mosaic, as the contract names it."""

    name: str
    attr: str
    kind: str  # inputs, enum, float, int, bool, crs, extent, string, output
    default: object
    label: str
    help: str
    choices: tuple = ()  # enum: ((cli token, display label), ...) in contract order
    optional: bool = False
    advanced: bool = False
    minimum: float = None
    maximum: float = None
    cli: str = None
    cli_aliases: tuple = ()
    in_plan: bool = True  # also a parameter of the plan (dry-run) algorithm

    def flag(self):
        """How to name this parameter in a message: ``NAME (--flag)``."""
        return f"{self.name} ({self.cli})" if self.cli else self.name

    @property
    def names(self):
        """The enum's value names, in contract order."""
        return tuple(name for name, _label in self.choices)

    @property
    def initial(self):
        """The default as :class:`Options` holds it (an enum's default by name)."""
        return self.choices[self.default][0] if self.kind == "enum" else self.default


def _choices(tokens, labels):
    return tuple(zip(tokens, labels))


PARAMS = (
    Param("INPUT", "inputs", "inputs", (), "Input rasters",
          "Rasters to mosaic, in stacking order (later inputs are drawn on top for "
          "METHOD=last). Layers or files; any format GDAL reads.", cli=None),
    Param("METHOD", "method", "enum", 0, "Overlap rule",
          "How overlapping valid pixels combine.",
          choices=_choices(METHODS, (
              "Last (later input on top, as gdalbuildvrt)", "First (earlier input on top)",
              "Minimum", "Maximum", "Mean", "Sum", "Count (number of valid inputs)",
              "Feather (distance-weighted blend across seams)", "Median",
              "Percentile (see PERCENTILE)",
              "Mode (most frequent valid value; ties: the smallest)")),
          cli="--method"),
    Param("PERCENTILE", "percentile", "float", 50.0, "Percentile",
          "The percentile for METHOD=percentile, 0-100: linear interpolation between the "
          "sorted valid values (numpy's default). Integer outputs round half to even.",
          minimum=0.0, maximum=100.0, cli="--percentile"),
    Param("ORDER", "order", "enum", 0, "Stacking order",
          "Order the inputs are stacked in: as given; by acquisition date, oldest first "
          "(so the newest is on top with METHOD=last; the date comes from the metadata, "
          "else from a YYYYMMDD date in the file name); by file name; or by pixel size, "
          "coarsest first (the finest on top with METHOD=last). Ties keep the given order.",
          choices=_choices(ORDERS, ("As given", "By acquisition date, oldest first",
                                    "By file name", "By pixel size, coarsest first")),
          cli="--order"),
    Param("ADD_ALPHA", "add_alpha", "bool", False, "Add an alpha band",
          "Add an alpha band: 255 where any input is valid, 0 elsewhere (as "
          "gdalbuildvrt -addalpha).", cli="--add-alpha"),
    Param("HARMONIZE", "harmonize", "enum", 0, "Radiometric harmonization",
          "Correct brightness steps between inputs (flights, dates) before compositing: "
          "one gain per input and band, or a gain and an offset, fitted by least squares "
          "so that every overlap agrees (mean gain 1, mean offset 0). Fitted on the "
          "overlaps in a first streaming pass at reduced resolution; inputs that overlap "
          "nothing are left as they are.",
          choices=_choices(HARMONIZATIONS, ("None", "Gain (one factor per input and band)",
                                            "Gain and offset")),
          cli="--harmonize"),
    Param("FEATHER_DISTANCE", "feather_distance", "float", 32.0, "Feather distance (pixels)",
          "Width of the blend for METHOD=feather: a source's weight rises from 0 at the "
          "edge of its valid footprint to 1 at this many pixels inside.",
          minimum=1.0, maximum=4096.0, cli="--feather-distance"),
    Param("NODATA_INPUT", "nodata_input", "float", None, "Input nodata value",
          "Treat this value as nodata in every input, in addition to each input's "
          "own nodata value and mask.", optional=True, cli="--nodata-input"),
    Param("NODATA_OUTPUT", "nodata_output", "float", None, "Output nodata value",
          "Value written where no input is valid. Defaults to the first input's "
          "nodata, else NODATA_INPUT; when neither is set, 0 is written and no nodata "
          "is set.",
          optional=True, cli="--nodata-output"),
    Param("TARGET_CRS", "target_crs", "crs", None, "Target CRS",
          "CRS of the mosaic. Defaults to the first input's CRS; inputs in another "
          "CRS are reprojected window by window.", optional=True, cli="--target-crs"),
    Param("RESAMPLING", "resampling", "enum", 0, "Resampling",
          "Resampling used where an input is reprojected or its pixels do not line up "
          "with the output grid.",
          choices=_choices([r[0] for r in RESAMPLINGS], (
              "Nearest neighbour", "Bilinear", "Cubic", "Cubic spline",
              "Lanczos windowed sinc", "Average", "Mode", "Maximum", "Minimum",
              "Median", "First quartile", "Third quartile")),
          advanced=True, cli="--resampling", cli_aliases=(("near", 0), ("med", 9))),
    Param("RESOLUTION", "resolution", "enum", 0, "Output resolution",
          "Pixel size chosen from the inputs (in the target CRS), as gdalbuildvrt "
          "-resolution.",
          choices=_choices(RESOLUTIONS, ("Highest (smallest pixels)", "Lowest (largest pixels)",
                                         "Average of the inputs")),
          cli="--resolution"),
    Param("PIXEL_SIZE", "pixel_size", "float", None, "Pixel size",
          "When > 0, the output pixel size in target CRS units (overrides RESOLUTION), "
          "as gdalbuildvrt -tr.", optional=True, advanced=True, minimum=0.0,
          cli="--pixel-size"),
    Param("TARGET_ALIGNED_PIXELS", "target_aligned_pixels", "bool", False,
          "Align the extent to the pixel size (-tap)",
          "Snap the output extent to multiples of the pixel size, as GDAL's -tap.",
          advanced=True, cli="--tap"),
    Param("EXTENT", "extent", "extent", None, "Output extent",
          "Clip the output to this extent (as -te). Defaults to the union of the inputs.",
          optional=True, cli="--extent"),
    Param("BANDS", "bands", "string", None, "Bands",
          "Comma-separated input band numbers to keep, in this order, e.g. 3,2,1. "
          "Default: all bands (an alpha band is used as a mask, not as data).",
          optional=True, advanced=True, cli="--bands"),
    Param("DATA_TYPE", "data_type", "enum", 0, "Output data type",
          "Data type of the output. 'Same as input' keeps the inputs' common type; "
          "values outside a smaller type's range are clipped.",
          choices=_choices(DATA_TYPES, ("Same as input", "Byte", "Int16", "UInt16", "UInt32",
                                        "Int32", "Float32", "Float64")),
          advanced=True, cli="--dtype", cli_aliases=(("byte", 1), ("input", 0))),
    Param("COMPRESSION", "compression", "enum", 0, "Compression",
          "GeoTIFF compression, with PREDICTOR 2 for integers and 3 for floats.",
          choices=_choices(COMPRESSIONS, ("LZW", "DEFLATE", "ZSTD", "None")),
          cli="--compress"),
    Param("CREATION_OPTIONS", "creation_options", "string", None,
          "Additional creation options",
          "Extra GDAL GeoTIFF creation options, KEY=VALUE separated by | (CLI: --co "
          "KEY=VALUE, repeatable). They override the plugin's own choices.",
          optional=True, advanced=True, cli="--co"),
    Param("COG", "cog", "bool", False, "Cloud Optimized GeoTIFF",
          "Write a Cloud Optimized GeoTIFF, with overviews.", cli="--cog"),
    Param("OVERVIEWS", "overviews", "bool", False, "Build internal overviews",
          "Build internal overviews (AVERAGE; NEAREST for a paletted output) in a plain "
          "GeoTIFF.", cli="--overviews"),
    Param("CHUNK_SIZE", "chunk_size", "int", 0, "Window size (pixels)",
          "Side of the square windows processed at a time; rounded up to a multiple "
          "of the output block size. 0 = the largest that fits MEMORY_MB (at most "
          "2048; a small mosaic is cut into at least 16 windows, 4 per thread).",
          minimum=0, maximum=65536, advanced=True, cli="--chunk"),
    Param("MEMORY_MB", "memory_mb", "int", 256, "Memory budget (MB)",
          "Budget for this run's pixel buffers and GDAL block cache together.",
          minimum=16, maximum=1048576, advanced=True, cli="--memory-mb"),
    Param("THREADS", "threads", "int", 0, "Threads",
          "Worker threads reading and compositing windows; 0 = all CPUs.",
          minimum=0, maximum=256, advanced=True, cli="--threads"),
    Param("DASK_SCHEDULER", "dask_scheduler", "string", None, "Dask scheduler",
          "Empty: run in this process. local:N: a local Dask cluster of N worker "
          "processes for this run. tcp://host:port: an existing Dask scheduler. Windows "
          "are rendered and compressed on the workers; the same pixels in every case. "
          "Needs the Python packages dask and distributed.",
          optional=True, advanced=True, cli="--dask", in_plan=False),
    Param("RESUME", "resume", "bool", False, "Resume an interrupted run",
          "Continue an interrupted or cancelled run into the same OUTPUT from its "
          "checkpoint (OUTPUT.partial and OUTPUT.partial.json).",
          cli="--resume", in_plan=False),
    Param("WORK_FOLDER", "work_folder", "string", None, "Work folder (remote OUTPUT)",
          "Local folder for the partial output and its checkpoint when OUTPUT is in object "
          "storage; the finished file is uploaded once. Default: the system temp folder.",
          optional=True, advanced=True, cli="--work-folder", in_plan=False),
    Param("OUTPUT", "output", "output", None, "Mosaic",
          "The output GeoTIFF (.tif or .tiff): a file, or an object in storage "
          "(/vsis3/bucket/key.tif, /vsigs/..., /vsiaz/...; CLI and API also s3://...).",
          cli="-o", in_plan=False),
)

PARAM_BY_NAME = {p.name: p for p in PARAMS}
PARAM_BY_ATTR = {p.attr: p for p in PARAMS}


def flag(attr):
    """How messages name the option filling ``attr``: ``OUTPUT (-o)``, ``INPUT``."""
    return PARAM_BY_ATTR[attr].flag()

# Options that only the core and the CLI know (not in the QGIS dialog).
_EXTRA_FIELDS = (
    ("extent_crs", object, None),        # CRS of EXTENT when it is not the target CRS
    ("checkpoint_seconds", float, 10.0),  # flush + journal at most this often
)

_KIND_TYPES = {"inputs": "list[str]", "enum": "str", "float": "Optional[float]",
               "int": "int", "bool": "bool", "crs": "Optional[str]",
               "extent": "Optional[tuple]", "string": "Optional[str]", "output": "Optional[str]"}

Options = dataclasses.make_dataclass(
    "Options",
    [(p.attr, _KIND_TYPES[p.kind], dataclasses.field(default=p.initial)) for p in PARAMS]
    + [(n, t, dataclasses.field(default=d)) for n, t, d in _EXTRA_FIELDS],
)
Options.__module__ = __name__  # picklable: plans travel to other processes (Dask, tests)
Options.__doc__ = ("Every setting of one mosaic job; attributes are the ``attr`` of "
                   ":data:`PARAMS` (enum values by name: ``method='feather'``) plus "
                   "extent_crs and checkpoint_seconds.")


def enum_name(attr, index):
    """The name of an enum value given its contract index (the QGIS glue's one conversion)."""
    param = PARAM_BY_ATTR[attr]
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(param.choices):
        raise OptionError(param.flag(), f"must be between 0 and {len(param.choices) - 1}, "
                          f"got {index!r}")
    return param.choices[index][0]


def choice(attr, value):
    """The canonical name of an enum value given as a name, an alias or an index.

    This is how the CLI and the API read enum values (``"near"`` is ``"nearest"``,
    ``"4"`` and ``4`` are the fifth value); the core only ever sees the result.
    """
    param = PARAM_BY_ATTR[attr]
    if isinstance(value, int) and not isinstance(value, bool):
        return enum_name(attr, value)
    text = str(value).strip().lower()
    if text in param.names:
        return text
    for alias, i in param.cli_aliases:
        if text == alias:
            return param.choices[i][0]
    if text.isdigit():
        return enum_name(attr, int(text))
    raise OptionError(param.flag(), f"unknown value {value!r}; choose one of "
                      f"{', '.join(param.names)}")


def validate(options):
    """Check the numeric options against their declared ranges, and the enum names.

    Raises
    ------
    OptionError
        Naming the first option out of range.
    """
    for param in PARAMS:
        if param.kind not in ("int", "float"):
            continue
        value = getattr(options, param.attr)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(param.flag(), f"must be a number, got {value!r}")
        if param.kind == "int" and int(value) != value:
            raise OptionError(param.flag(), f"must be a whole number, got {value!r}")
        if isinstance(value, float) and math.isinf(value):
            raise OptionError(param.flag(), "must be finite")
        if math.isnan(value) and param.attr not in ("nodata_input", "nodata_output"):
            raise OptionError(param.flag(), "must be a number, got NaN")
        if param.minimum is not None and value < param.minimum:
            raise OptionError(param.flag(), f"must be at least {param.minimum:g}, got {value!r}")
        if param.maximum is not None and value > param.maximum:
            raise OptionError(param.flag(), f"must be at most {param.maximum:g}, got {value!r}")
    parse_dask(options.dask_scheduler)
    for param in PARAMS:
        value = getattr(options, param.attr)
        if param.kind == "enum" and value not in param.names and not _is_rule(param, value):
            raise OptionError(param.flag(), f"unknown value {value!r}; choose one of "
                              f"{', '.join(param.names)}")


def parse_dask(value):
    """DASK_SCHEDULER as ``(None, None)``, ``("local", N)`` or ``("tcp", address)``.

    Raises
    ------
    OptionError
        Naming DASK_SCHEDULER for any other value.
    """
    text = "" if value is None else str(value).strip()
    if not text:
        return None, None
    flag = PARAM_BY_ATTR["dask_scheduler"].flag()
    if text.lower().startswith("local:"):
        count = text[6:].strip()
        if not count.isdigit() or not 1 <= int(count) <= 1024:
            raise OptionError(flag, f"{text!r}: local:N needs a number of workers N "
                              "between 1 and 1024")
        return "local", int(count)
    host, _, port = text[6:].rpartition(":")
    if text.lower().startswith("tcp://") and host and port.isdigit() and 0 < int(port) < 65536:
        return "tcp", text
    raise OptionError(flag, f"{text!r} is not local:N or tcp://host:port")


def _is_rule(param, value):
    """METHOD may also be a rule object (the API's custom rules)."""
    return param.attr == "method" and isinstance(value, Rule)


def rule_of(method):
    """The :class:`~.composite.Rule` for METHOD: a name from RULES, or a rule itself."""
    if isinstance(method, Rule):
        return method
    if method not in RULES:
        raise OptionError(flag("method"), f"unknown rule {method!r}; choose "
                          f"one of {', '.join(RULES)}, or pass a Rule")
    return RULES[method]


def parse_bands(text):
    """Parse BANDS (``"3,2,1"``) into a tuple of 1-based band numbers, or None."""
    if text is None or not str(text).strip():
        return None
    option = flag("bands")
    bands = []
    for part in str(text).replace(" ", "").split(","):
        if not part.isdigit() or int(part) < 1:
            raise OptionError(option, f"{text!r} is not a comma-separated list of band "
                              "numbers (1, 2, ...)")
        bands.append(int(part))
    return tuple(bands)


def parse_creation_options(text):
    """Parse ``KEY=VALUE|KEY=VALUE`` into an ordered dict with upper-case keys."""
    result = {}
    if text is None:
        return result
    option = flag("creation_options")
    for item in str(text).replace("\n", "|").split("|"):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(option, f"{item!r} is not KEY=VALUE")
        result[key.strip().upper()] = value.strip()
    return result


def parse_extent(value):
    """Parse EXTENT into ((xmin, ymin, xmax, ymax), crs text or None).

    Plain text ``xmin,ymin,xmax,ymax`` and 4-sequences are in GDAL's ``-te``
    order. Text ending in a CRS in brackets is QGIS's own form and order,
    ``xmin,xmax,ymin,ymax [EPSG:4326]`` (what QGIS writes for an extent), and
    the CRS is the extent's: it is transformed to the target CRS.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    option = flag("extent")
    crs = None
    form = "xmin,ymin,xmax,ymax"
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("]") and "[" in text:
            text, _, crs = text[:-1].partition("[")
            crs = crs.strip()
            form = "xmin,xmax,ymin,ymax [CRS] (QGIS's order)"
            if not crs:
                raise OptionError(option, f"{value!r} has an empty CRS in brackets")
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    else:
        parts = list(value)
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise OptionError(option, f"{value!r} is not {form}")
    if crs is not None:
        xmin, xmax, ymin, ymax = numbers
    else:
        xmin, ymin, xmax, ymax = numbers
    if xmax <= xmin or ymax <= ymin:
        raise OptionError(option, f"{value!r} is empty as {form} (xmax must exceed xmin and "
                          "ymax ymin)")
    return (xmin, ymin, xmax, ymax), crs
