"""The ``pixfun`` case: METHOD max / min / mean / median against GDAL's pixel functions.

    /usr/bin/python3 bench/run.py --only pixfun                 # on the host's GDAL
    tools/chroot.sh qgis344 -- /usr/bin/python3 bench/run.py --only pixfun   # GDAL 3.13

On the benchmark's tile set (the scale's first size), each METHOD is run by our CLI
and by ``gdal raster mosaic --pixel-function METHOD`` (GDAL >= 3.12; the functions it
lists in its ``--help``), with the same creation options (LZW + PREDICTOR=2, 512 px
tiles; GDAL with NUM_THREADS=ALL_CPUS and GDAL_CACHEMAX=MEMORY_MB), interleaved and
repeated: wall time, CPU seconds, peak RSS, and the pixels compared with GDAL's.

Values: min and max must be identical. For integer outputs GDAL converts its double
result with ``(T)(x + 0.5)`` (round half up) and we round half to even, so mean and
median differ by exactly 1 on ties (x.5) and nowhere else: a difference larger than 1
fails the run, as does any difference for min or max (see
tests/unit/test_pixfun_matches_gdal.py for the float outputs, compared exactly).
"""

import re
import subprocess

import data

METHODS = ("max", "min", "mean", "median")


def _help(args):
    try:
        proc = subprocess.run(["gdal", *args, "--help"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def gdal_mosaic_available():
    """True when the GDAL >= 3.11 command line has ``gdal raster mosaic``."""
    return _help(["raster", "mosaic"]) is not None


def gdal_mosaic_functions():
    """The pixel functions ``gdal raster mosaic --pixel-function`` accepts (may be empty)."""
    text = _help(["raster", "mosaic"]) or ""
    found = re.search(r"PIXEL-FUNCTION=([\w|]+)", text)
    return set(found.group(1).split("|")) if found else set()


def gdal_mosaic_argv(inputs, co, extra=()):
    """A function of the output path: the ``gdal raster mosaic`` command line."""
    flags = [x for c in co for x in ("--co", c)]
    return lambda out: ["gdal", "raster", "mosaic", "-q", *extra, *flags, *inputs, out]


def run_case(bench, tool_class, co, size, repeats):
    """Run every METHOD against GDAL's pixel function; returns the result rows."""
    info = data.mosaic_set(grid=size["grid"], tile=size["tile"], overlap=size["overlap"],
                           noise=bench.args.noise)
    folder, inputs = info["folder"], info["inputs"]
    functions = gdal_mosaic_functions()
    print(f"case pixfun ({size['name']}, {info['width']} x {info['height']} px): METHOD "
          f"{', '.join(METHODS)} against gdal raster mosaic --pixel-function", flush=True)
    if not functions:
        bench.notes.append("pixfun: this GDAL has no `gdal raster mosaic --pixel-function` "
                           "(GDAL >= 3.12): our rules were timed alone")
    cases = []
    for method in METHODS:
        ours = bench.ours(inputs, "lzw", ["--method", method], key=f"sm-{method}",
                          label=f"streaming_mosaic --method {method}")
        tools = [ours]
        ref = ours.key
        if method in functions:
            ref = f"gdal-{method}"
            tools.append(tool_class(ref, f"gdal raster mosaic --pixel-function {method}", "LZW",
                                    gdal_mosaic_argv(inputs, co + ["NUM_THREADS=ALL_CPUS"],
                                                     ["--pixel-function", method]),
                                    bench.env_gdal, "ref-lzw"))
        case = {"name": f"pixfun {method}", "kind": "pixfun", "method": method,
                "size": size["name"], "width": info["width"], "height": info["height"],
                "mpix": info["width"] * info["height"] / 1e6, "inputs": len(inputs)}
        outputs = bench.run_tools(case, tools, repeats, folder, ref, set())
        got = case.get("compare", {}).get(ours.key)
        if got and not got.get("identical"):
            too_far = "diff_pixels" not in got or got["max_abs"] > (
                1 if method in ("mean", "median") else 0)
            if too_far:
                bench.failures.append(f"pixfun {method}: differs from GDAL's pixel function "
                                      f"beyond rounding: {got}")
        bench.cleanup(outputs)
        cases.append(case)
    return cases


def _summary(case, key):
    for row in case["rows"]:
        if row["key"] == key and row["summary"]:
            return row
    return None


def targets(cases, limit):
    """Target 3 per METHOD: time and CPU <= GDAL's, peak RSS <= limit, values."""
    out = []
    for case in cases:
        ours, gdal = _summary(case, f"sm-{case['method']}"), _summary(case, f"gdal-{case['method']}")
        if ours is None:
            continue
        s = ours["summary"]
        measured = f"{s['wall']:.2f} s, {s['cpu_s']:.1f} s CPU, {s['rss_mb']:.0f} MB"
        met = s["rss_mb"] <= limit
        if gdal is not None:
            g = gdal["summary"]
            measured += (f" vs GDAL {g['wall']:.2f} s, {g['cpu_s']:.1f} s CPU, "
                         f"{g['rss_mb']:.0f} MB ({s['wall'] / g['wall']:.2f}x)")
            met = met and s["wall"] <= g["wall"] and s["cpu_s"] <= g["cpu_s"]
        else:
            met = None
        out.append({"target": "pixfun", "name": f"METHOD {case['method']} vs GDAL pixel function",
                    "case": case["size"], "measured": measured,
                    "goal": f"time and CPU <= GDAL's, peak <= {limit:.0f} MB", "met": met})
    return out


def markdown(cases):
    """The table of the case (one row per tool and METHOD)."""
    from compare import describe
    if not cases:
        return ""
    c0 = cases[0]
    lines = [f"**GDAL pixel functions** (`--only pixfun`, {c0['size']}: {c0['inputs']} inputs, "
             f"{c0['width']}x{c0['height']}, LZW + PREDICTOR=2; GDAL with NUM_THREADS="
             "ALL_CPUS). Integer output: GDAL rounds its double result half up, we round half "
             "to even, so mean and median differ by 1 on ties (x.5) only.", "",
             "| METHOD | tool | time (s) | vs GDAL | CPU (s) | peak RSS (MB) | pixels vs GDAL |",
             "|---|---|---:|---:|---:|---:|---|"]
    for case in cases:
        gdal = _summary(case, f"gdal-{case['method']}")
        for row in case["rows"]:
            s = row["summary"]
            if row["error"] or not s:
                lines.append(f"| {case['method']} | {row['label']} | failed: {row['error']} "
                             "| | | | |")
                continue
            ratio = f"{s['wall'] / gdal['summary']['wall']:.2f}x" if gdal else ""
            t = f"{s['wall']:.2f}" + (f" ({s['wall_min']:.2f}-{s['wall_max']:.2f})"
                                      if s["n"] > 1 else "")
            pix = describe(row["compare"]) if row["compare"] else (
                "reference" if row["key"].startswith("gdal-") else "")
            lines.append(f"| {case['method']} | {row['label']} | {t} | {ratio} | "
                         f"{s['cpu_s']:.1f} | {s['rss_mb']:.0f} | {pix} |")
    return "\n".join(lines)
