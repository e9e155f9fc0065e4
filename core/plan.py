"""From options to a complete, picklable job plan, reading no pixels.

:func:`make_plan` runs the straight line of the architecture up to the engine:
options -> sources -> grid -> per-input read specs -> windows + index -> memory
budget -> output type, nodata and creation options. The plan is everything a
worker needs to render any window (:func:`~.render.render_window`), and what
the plan (dry-run) algorithm reports.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal

from . import bandmeta, direct, harmonize, overviews
from . import grid as gridmod
from .errors import InputError, OptionError
from .memory import MB, Budget, plan_budget, smallest_budget_mb
from .options import PARAM_BY_ATTR, flag, parse_bands, parse_creation_options, rule_of, validate
from .order import apply as order_inputs
from .pyramid import streams
from .sources import crs_label, representable, scan
from .specs import build_spec
from .storage import io_cache_bytes
from .windows import SourceIndex, WindowPlan

OVERVIEW_FACTOR = 4 / 3
# GDAL before 3.10 keeps its freed cache blocks resident (memory.FREED_CACHE_FACTOR).
FREED_CACHE_RESIDENT = int(gdal.VersionInfo()) < 3100000


@dataclass
class Plan:
    """A mosaic job, ready to run."""

    options: object
    sources: list
    grid: object
    footprints: list
    specs: list
    method: str
    rule: object
    band_count: int
    input_dtype: str
    out_dtype: str
    nodata_out: float
    nodata_input: float
    feather_distance: float
    halo: int
    block: int
    windows: WindowPlan
    index: SourceIndex
    budget: Budget
    creation_options: dict
    warnings: list = field(default_factory=list)
    band_meta: tuple = ()  # per output band: bandmeta.BandMeta to write
    harmony: object = None  # harmonize.Harmony: per-input corrections (set before running)

    @property
    def work_dtype(self):
        """Type the inputs are composited in: float64 once HARMONIZE corrects them."""
        return self.input_dtype if self.harmony is None else "float64"

    @property
    def threads(self):
        return self.budget.threads

    @property
    def out_bands(self):
        """Bands written: the data bands, plus the alpha band with ADD_ALPHA."""
        return self.band_count + (1 if self.options.add_alpha else 0)

    @property
    def raw_bytes(self):
        """Uncompressed size of the mosaic."""
        size = np.dtype(self.out_dtype).itemsize
        return self.grid.width * self.grid.height * self.out_bands * size

    def disk_estimate(self):
        """(low, high) bytes the output may take on disk."""
        raw = self.raw_bytes * (OVERVIEW_FACTOR if self.options.cog or self.options.overviews else 1)
        if self.creation_options.get("COMPRESS", "NONE").upper() == "NONE":
            return raw, raw
        return raw * 0.2, raw * 0.9

    def reprojected(self):
        return [s for s, fp in zip(self.sources, self.footprints) if not fp.same_crs]


def threads_wanted(value):
    return int(value) if value else (os.cpu_count() or 1)


def output_dtype(method, input_dtype, data_type_token, n_inputs):
    """The output type: DATA_TYPE, else the inputs' common type (count: an unsigned int)."""
    if data_type_token != "same":
        return np.dtype(data_type_token).name
    if method == "count":
        for dtype in ("uint8", "uint16", "uint32"):
            if n_inputs <= np.iinfo(dtype).max:
                return dtype
    return np.dtype(input_dtype).name


def input_type(sources, data_type_token):
    """The inputs' common type, with numpy's rules.

    Raises
    ------
    InputError
        When only integer inputs have no common integer type (int64 with uint64,
        or uint64 with a signed type) and DATA_TYPE does not choose one: numpy's
        float64 would round values beyond 2**53.
    """
    dtypes = [np.dtype(s.dtype) for s in sources]
    common = dtypes[0]
    for i, dtype in enumerate(dtypes[1:], 1):
        wider = np.result_type(common, dtype)
        if wider.kind == "f" and common.kind in "iu" and dtype.kind in "iu" \
                and data_type_token == "same":
            other = next(s for s in sources[:i] if np.result_type(s.dtype, dtype).kind == "f")
            raise InputError(sources[i].path, f"is {dtype} while {other.name} is {other.dtype}: "
                             "no integer type holds both exactly; set DATA_TYPE (e.g. "
                             "float64, which rounds values beyond 2**53)")
        common = wider
    return common.name


def _exact(value, dtype):
    """``value`` as an int for 64-bit integer types (a float cannot hold them all)."""
    if np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize == 8:
        return int(value)
    return float(value)


def output_nodata(options, method, sources, out_dtype):
    """NODATA_OUTPUT, else the first input nodata found, else NODATA_INPUT (as gdalwarp
    -srcnodata without -dstnodata) when the output type holds it; None for count."""
    option = flag("nodata_output")
    if options.nodata_output is not None:
        value = options.nodata_output
        if not representable(value, out_dtype):
            raise OptionError(option, f"{value:g} cannot be stored in the {out_dtype} output")
        return _exact(value, out_dtype)
    if method == "count":
        return None
    for info in sources:
        for nd in info.nodata:
            if nd is not None:
                if not representable(nd, out_dtype):
                    raise OptionError(option, f"the inputs' nodata {nd:g} cannot be stored in "
                                      f"the {out_dtype} output; set NODATA_OUTPUT")
                return _exact(nd, out_dtype)
    if options.nodata_input is not None and representable(options.nodata_input, out_dtype):
        return _exact(options.nodata_input, out_dtype)
    return None


def block_size(options_co, chunk, grid_size):
    """Output tile side: BLOCKXSIZE/BLOCKYSIZE if given, else 512 (256 for small jobs)."""
    bx = options_co.get("BLOCKXSIZE")
    by = options_co.get("BLOCKYSIZE")
    option = flag("creation_options")
    sizes = []
    for key, value in (("BLOCKXSIZE", bx), ("BLOCKYSIZE", by)):
        if value is None:
            continue
        if not value.isdigit() or int(value) < 16 or int(value) % 16:
            raise OptionError(option, f"{key}={value} must be a multiple of 16")
        sizes.append(int(value))
    if sizes:
        return math.lcm(*sizes)
    if (chunk and chunk < 512) or max(grid_size) < 512:
        return 256
    return 512


def creation_options(options, out_dtype, raw_bytes, block, threads):
    """GeoTIFF creation options: tiled, compressed, BigTIFF-safe; user options win."""
    user = parse_creation_options(options.creation_options)
    compress = options.compression.upper()
    co = {"TILED": "YES", "BLOCKXSIZE": str(block), "BLOCKYSIZE": str(block),
          "COMPRESS": compress}
    if compress != "NONE":
        co["PREDICTOR"] = "3" if np.dtype(out_dtype).kind == "f" else "2"
        if compress == "ZSTD":
            co["ZSTD_LEVEL"] = "1"
    if np.dtype(out_dtype) == np.int8 and not hasattr(gdal, "GDT_Int8"):
        co["PIXELTYPE"] = "SIGNEDBYTE"
    over = OVERVIEW_FACTOR if options.cog or options.overviews else 1
    # A compressed tile can be larger than its raw pixels on noise: decide from raw size.
    co["BIGTIFF"] = "YES" if raw_bytes * over > 3.5 * 2 ** 30 else "IF_SAFER"
    co["NUM_THREADS"] = str(threads)
    if options.add_alpha:
        co["ALPHA"] = "YES"
    co.update(user)
    return co


def make_plan(options, strict=True):
    """Build the :class:`Plan` of a job (opens inputs for metadata, reads no pixels).

    Parameters
    ----------
    options : Options
    strict : bool
        When False (the plan algorithm), a band-count mismatch is reported as a
        warning instead of an error.

    Raises
    ------
    OptionError, InputError
    """
    validate(options)
    rule = rule_of(options.method)
    method = rule.name
    bands = parse_bands(options.bands)
    sources, warnings = scan(options.inputs, bands, strict)
    sources = order_inputs(options.order, sources)
    grid, footprints = gridmod.compute(sources, options)

    input_dtype = input_type(sources, options.data_type)
    out_dtype = output_dtype(method, input_dtype, options.data_type, len(sources))
    nodata_out = output_nodata(options, method, sources, out_dtype)
    nodata_input = None if options.nodata_input is None else float(options.nodata_input)

    band_count = len(sources[0].bands)
    feather = float(options.feather_distance or PARAM_BY_ATTR["feather_distance"].default)
    halo = int(math.ceil(feather)) if rule.weights else 0
    co_user = parse_creation_options(options.creation_options)
    block = block_size(co_user, int(options.chunk_size or 0), (grid.width, grid.height))
    metas, notes = bandmeta.combine(sources, method, out_dtype, strict)
    warnings.extend(notes)
    specs = _specs(sources, footprints, grid, options.resampling, warnings)
    boxes = [s.bbox if s else None for s in specs]
    out_bands = band_count + (1 if options.add_alpha else 0)
    # HARMONIZE composites corrected values in float64.
    work_dtype = input_dtype if options.harmonize == "none" else "float64"
    fast = direct.possible(rule, specs, work_dtype, out_dtype, nodata_out, nodata_input,
                           out_bands != band_count)
    compressed = creation_options(options, out_dtype, 0, block, 1)["COMPRESS"].upper() != "NONE"
    budget = _budget(options, options.memory_mb, block, out_bands, rule, work_dtype,
                     out_dtype, grid, halo, specs, boxes,
                     io_cache_bytes([s.path for s in sources]), fast, compressed)
    if not budget.fits:
        warnings.append(f"MEMORY_MB={options.memory_mb} is too small for one "
                        f"{budget.chunk}x{budget.chunk} window; the run may use more")
    windows = WindowPlan(grid.width, grid.height, budget.chunk)
    index = SourceIndex(windows, boxes, halo)
    raw = grid.width * grid.height * out_bands * np.dtype(out_dtype).itemsize
    co = creation_options(options, out_dtype, raw, block, budget.compress or budget.threads)
    warnings.extend(_warnings(sources, footprints, specs, co, raw, nodata_input))
    warnings.extend(_rounding_warnings(sources, specs, rule, out_dtype))
    if nodata_out is None and nodata_input is not None and method != "count":
        warnings.append(f"NODATA_INPUT {nodata_input:g} cannot be stored in the {out_dtype} "
                        "output: where no input is valid 0 is written, with no nodata flag; "
                        "set NODATA_OUTPUT")
    return Plan(options, sources, grid, footprints, specs, method, rule, band_count, input_dtype,
                out_dtype, nodata_out, nodata_input, feather, halo, block, windows, index,
                budget, co, warnings, metas)


def _budget(options, memory_mb, block, band_count, rule, input_dtype, out_dtype, grid, halo,
            specs, boxes, io_cache=0, fast=False, compressed=True):
    """The memory budget; for a stack rule, refused when even one row of it cannot fit
    (``fast``: every window takes :mod:`.direct`'s path)."""
    size = (grid.width, grid.height)

    def depth(side):
        return SourceIndex(WindowPlan(grid.width, grid.height, side), boxes, halo).deepest()

    def budget(mb):
        return plan_budget(mb, threads_wanted(options.threads), block, band_count, rule,
                           input_dtype, out_dtype, size, chunk=int(options.chunk_size or 0),
                           halo=halo, depth=depth, io_cache=io_cache, direct=fast,
                           compressed=compressed,
                           warped=any(s is not None and s.kind == "warp" for s in specs),
                           sink_rows=block if streams(options) or overviews.streams(options) else 0,
                           freed_cache=FREED_CACHE_RESIDENT)

    result = budget(memory_mb)
    if rule.stack and not result.fits:
        works = smallest_budget_mb(lambda mb: budget(mb).fits, memory_mb)
        raise OptionError(flag("memory_mb"),
                          f"{memory_mb} MB cannot hold one {result.chunk} px window with its "
                          f"stack of {result.depth} input(s) for METHOD={rule.name}, even "
                          f"stacked one row at a time; use at least {works} MB")
    return result


def _specs(sources, footprints, grid, resampling, warnings):
    """Each input's read spec; inputs with a colour table are never resampled by
    blending (a bilinear mix of palette indices is another class): nearest instead."""
    nearest = set()
    if resampling in bandmeta.BLENDING:
        nearest = {s.index for s in bandmeta.paletted(sources)}
    specs = [build_spec(s, fp, grid, "nearest" if s.index in nearest else resampling)
             for s, fp in zip(sources, footprints)]
    forced = [s.name for s, spec in zip(sources, specs)
              if s.index in nearest and spec is not None and spec.kind != "direct"]
    if forced:
        warnings.append(f"{len(forced)} input(s) with a colour table ({', '.join(forced[:5])}) "
                        f"are resampled with nearest, not {resampling}: blending palette "
                        "indices gives other classes")
    return specs


def _warnings(sources, footprints, specs, co, raw, nodata_input):
    out = []
    crs = {s.crs_wkt for s in sources}
    if len(crs) > 1:
        names = ", ".join(s.name for s, fp in zip(sources, footprints) if not fp.same_crs)
        out.append(f"mixed CRS: {names} will be reprojected")
    res = {(round(fp.res[0], 9), round(fp.res[1], 9)) for fp in footprints}
    if len(res) > 1:
        out.append(f"inputs have {len(res)} different resolutions; they are resampled "
                   "to the output grid")
    bare = [s.name for s in sources if all(nd is None for nd in s.nodata)
            and not s.mask_per_dataset and not s.mask_per_band and not s.alpha_band]
    if bare and len(sources) > 1 and nodata_input is None:
        listed = ", ".join(bare[:5]) + (f" and {len(bare) - 5} more" if len(bare) > 5 else "")
        out.append(f"{len(bare)} input(s) have no nodata value or mask ({listed}): all their "
                   "pixels count as valid; set NODATA_INPUT if they have a nodata collar, or "
                   "ADD_ALPHA to mark where the inputs are")
    missed = [s.name for s, spec in zip(sources, specs) if spec is None]
    if missed:
        out.append(f"{len(missed)} input(s) lie outside the output extent: {', '.join(missed[:5])}")
    if co.get("BIGTIFF") == "YES" or raw > 4 * 2 ** 30:
        out.append(f"the output is {raw / 2**30:.1f} GiB uncompressed: written as BigTIFF")
    return out


def _rounding_warnings(sources, specs, rule, out_dtype):
    """Where 64-bit integer pixels may be rounded (a float64 holds 53 bits, a float32 24)."""
    wide = [i for i, s in enumerate(sources)
            if np.dtype(s.dtype).kind in "iu" and np.dtype(s.dtype).itemsize == 8]
    if not wide:
        return []
    out = []
    resampled = [sources[i].name for i in wide if specs[i] is not None
                 and specs[i].kind != "direct"]
    if resampled:
        out.append(f"{', '.join(resampled[:5])}: 64-bit integers resampled or reprojected by "
                   "GDAL, which computes in floating point: values beyond 2**24 may be rounded")
    if rule.work == "float64":
        out.append(f"METHOD={rule.name} computes in float64: 64-bit integer values beyond "
                   "2**53 are rounded")
    if np.dtype(out_dtype).kind == "f":
        bits = 53 if np.dtype(out_dtype).itemsize == 8 else 24
        out.append(f"DATA_TYPE {out_dtype} rounds 64-bit integer values beyond 2**{bits}")
    return out


def summary_lines(plan):
    """A few lines summarising the plan, for logs (its warnings are ``plan.warnings``)."""
    g = plan.grid
    crs = crs_label(g.crs_wkt)
    low, high = plan.disk_estimate()
    lines = [
        f"{len(plan.sources)} input(s) -> {g.width} x {g.height} px, {plan.band_count} band(s), "
        f"{plan.out_dtype}, CRS {crs}, pixel {g.res[0]:.10g} x {g.res[1]:.10g}",
        f"method {plan.method}; {len(plan.windows)} window(s) of {plan.budget.chunk} px; "
        f"{plan.threads} thread(s)" + (f", compressing on {plan.budget.compress}"
                                        if plan.budget.compress > plan.threads else ""),
        f"memory: {plan.budget.summary()}",
        f"expected output size: {low / MB:,.0f}-{high / MB:,.0f} MB "
        f"({plan.creation_options.get('COMPRESS')})",
    ]
    return lines + harmonize.describe(plan)

