#!/usr/bin/python3
"""Benchmark streaming_mosaic against GDAL and friends (issue "Performance").

    make bench                       # BENCH_SCALE=small: ~10 minutes
    BENCH_SCALE=ci make bench-smoke  # < 1 minute, correctness only
    /usr/bin/python3 bench/run.py --scale large --readme README.md   # by hand

Each case generates its inputs once (cached in bench/out/data, keyed by their
parameters), then runs every tool as a child process, interleaved (tool order
rotated each round), repeated, and reports medians of the wall time and the max
peak RSS (``/usr/bin/time -f %M``). Tools:

* ``streaming_mosaic`` (this plugin's CLI) with MEMORY_MB (default 256);
* ``gdal_translate`` of a gdalbuildvrt VRT with identical creation options and
  GDAL_CACHEMAX=MEMORY_MB, with NUM_THREADS=1 and NUM_THREADS=ALL_CPUS;
* ``gdal_translate`` of the finished uncompressed mosaic (the I/O floor);
* a naive windowed copy of the VRT (rasterio, one 512 px block at a time);
* ``gdal_merge.py`` and ``rasterio.merge`` where they are fast enough / fit in RAM;
* ``gdalwarp`` for the mixed-CRS case.

Correctness: at every size our METHOD=last output must be pixel-identical to
gdal_translate's, whatever THREADS and CHUNK_SIZE; any difference is printed
loudly and the exit status is 1. Timings never fail the run.

Results: a Markdown table + target summary, written between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` of the README given with
``--readme`` (chart in resources/bench.png), or to bench/out/results.md (chart
bench/out/bench.png) when the README or its markers are missing; raw numbers
in bench/out/results-<scale>.json.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import data  # noqa: E402
import pixfun_case  # noqa: E402
import report  # noqa: E402
from compare import compare, describe  # noqa: E402
from links import package_link  # noqa: E402
from measure import ToolFailed, baseline_rss, byte_compiled, load_average, run_child, summarize  # noqa: E402

PY = "/usr/bin/python3"
OUT = data.OUT
CO_LZW = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=LZW", "PREDICTOR=2",
          "BIGTIFF=IF_SAFER"]
CO_NONE = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=NONE", "BIGTIFF=IF_SAFER"]
SLACK_MB = 32           # allowed above MEMORY_MB + interpreter baseline
GROWTH_LIMIT = 1.10     # peak RSS growth allowed when the mosaic grows 16x

SCALES = {
    "ci": {
        "sizes": [dict(name="ci", grid=3, tile=240, overlap=20, repeats=1)],
        "many": dict(n_small=20, small=32, n_large=2, repeats=1),
        "mixed": dict(grid=2, tile=200, overlap=20, repeats=1),
        "determinism": dict(threads=[1, 2, 8], chunks=[256, 512]),
        "budgets": [64, 1024],
        "gdal_merge_max_mpix": 80, "rio_merge_max_mpix": 100,
    },
    "small": {
        "sizes": [dict(name="4k", grid=3, tile=1467, overlap=200, repeats=3),
                  dict(name="16k", grid=3, tile=5467, overlap=200, repeats=2)],
        "many": dict(n_small=100, small=64, n_large=4, repeats=3),
        "mixed": dict(grid=2, tile=1500, overlap=200, repeats=2),
        "determinism": dict(threads=[1, 2, 8], chunks=[256, 2048]),
        "budgets": [64, 128, 512, 1024],
        "gdal_merge_max_mpix": 20, "rio_merge_max_mpix": 100,
    },
    "large": {
        "sizes": [dict(name="8.6k", grid=3, tile=3000, overlap=200, repeats=3),
                  dict(name="34k", grid=3, tile=11600, overlap=200, repeats=1)],
        "many": dict(n_small=100, small=128, n_large=4, repeats=3),
        "mixed": dict(grid=2, tile=3000, overlap=200, repeats=2),
        "determinism": dict(threads=[1, 2, 8], chunks=[512, 2048]),
        "budgets": [64, 128, 512, 1024],
        "gdal_merge_max_mpix": 80, "rio_merge_max_mpix": 100,
    },
}


class Tool:
    """One command to benchmark; ``argv(out)`` builds its command line."""

    def __init__(self, key, label, compression, argv, env, role="other", repeats=None):
        self.key, self.label, self.compression = key, label, compression
        self.argv, self.env, self.role, self.repeats = argv, env, role, repeats


class Bench:
    def __init__(self, args):
        self.args = args
        self.scale = SCALES[args.scale]
        self.memory_mb = args.memory_mb
        self.runs_dir = os.path.join(OUT, "runs", args.scale)
        os.makedirs(self.runs_dir, exist_ok=True)
        # One link per checkout path: the host and the sid chroot (/src/...) share bench/out.
        pkg = package_link(os.path.join(OUT, "pkg-" + hashlib.sha1(ROOT.encode()).hexdigest()[:8]))
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("GDAL_", "CPL_")) and k != "PYTHONPATH"}
        # Our CLI sets its own cache from MEMORY_MB: GDAL_CACHEMAX is not given to it.
        self.env_ours = byte_compiled(dict(base, PYTHONPATH=pkg), pkg, PY)
        self.env_gdal = dict(base, GDAL_CACHEMAX=str(self.memory_mb))
        self.failures = []      # correctness failures (fatal)
        self.notes = []
        self.results = {"scale": args.scale, "memory_mb": self.memory_mb, "cases": [],
                        "determinism": [], "started": datetime.datetime.now().isoformat(
                            timespec="seconds"), "load_start": load_average()}

    # -- tools -------------------------------------------------------------------------

    def ours(self, inputs, compress, extra=(), key=None, label=None, role=None, co_block=True):
        args = list(inputs)
        block = ["--co", "BLOCKXSIZE=512", "--co", "BLOCKYSIZE=512"] if co_block else []
        opts = ["--compress", compress, "--memory-mb", str(self.memory_mb), "--quiet"] + block
        return Tool(key or f"sm-{compress}", label or "streaming_mosaic", compress.upper(),
                    lambda out: [PY, "-m", "streaming_mosaic", *args, "-o", out, *opts,
                                 *extra], self.env_ours, role or "ours")

    def translate(self, src, compress, threads, key, label, role):
        co = list(CO_LZW if compress == "lzw" else CO_NONE)
        if threads:
            co.append(f"NUM_THREADS={threads}")
        flags = [x for c in co for x in ("-co", c)]
        return Tool(key, label, compress.upper(),
                    lambda out: ["gdal_translate", "-q", *flags, src, out], self.env_gdal, role)

    def naive(self, vrt):
        flags = [x for c in CO_LZW for x in ("--co", c)]
        return Tool("naive", "windowed copy of the VRT (rasterio, 512 px)", "LZW",
                    lambda out: [PY, os.path.join(HERE, "tools.py"), "naive", vrt, out, *flags],
                    self.env_gdal)

    def rio_merge(self, listing):
        flags = [x for c in CO_LZW for x in ("--co", c)]
        return Tool("rio-merge", "rasterio.merge (in memory)", "LZW",
                    lambda out: [PY, os.path.join(HERE, "tools.py"), "rio-merge", listing, out,
                                 *flags], self.env_gdal)

    def gdal_merge(self, inputs):
        flags = [x for c in CO_LZW for x in ("-co", c)]
        return Tool("gdal-merge", "gdal_merge.py", "LZW",
                    lambda out: [PY, "/usr/bin/gdal_merge.py", "-q", "-n", "0", "-a_nodata", "0",
                                 "-init", "0", *flags, "-o", out, *inputs], self.env_gdal)

    # -- running -----------------------------------------------------------------------

    def run_tools(self, case, tools, repeats, folder, ref_key, fatal_keys):
        """Interleaved repeats; compare every output with ``ref_key``'s after round 1."""
        outdir = os.path.join(self.runs_dir, case["name"].replace(" ", "-"))
        os.makedirs(outdir, exist_ok=True)
        runs = {t.key: [] for t in tools}
        errors = {}
        outputs = {t.key: os.path.join(outdir, f"{t.key}.tif") for t in tools}
        for r in range(repeats):
            shift = r % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                if tool.key in errors or (tool.repeats is not None and r >= tool.repeats):
                    continue
                try:
                    m = run_child(tool.argv(outputs[tool.key]), cwd=folder, env=tool.env,
                                  output=outputs[tool.key])
                except ToolFailed as exc:
                    errors[tool.key] = str(exc)
                    print(f"    {tool.key:<14} FAILED {exc}", flush=True)
                    if tool.key in fatal_keys or tool.key == ref_key:
                        self.failures.append(f"{case['name']}: {tool.label} failed: {exc}")
                    continue
                runs[tool.key].append(m)
                print(f"    [{r + 1}/{repeats}] {tool.key:<14} {m['wall']:7.2f} s "
                      f"{m['rss_mb']:7.0f} MB", flush=True)
            if r == 0:
                self._compare_all(case, tools, outputs, errors, ref_key, fatal_keys)
        rows = []
        for tool in tools:
            rows.append({"key": tool.key, "label": tool.label, "compression": tool.compression,
                         "role": tool.role, "error": errors.get(tool.key),
                         "summary": summarize(runs[tool.key]), "runs": runs[tool.key],
                         "compare": case.setdefault("compare", {}).get(tool.key)})
        case["rows"] = rows
        return outputs

    def _compare_all(self, case, tools, outputs, errors, ref_key, fatal_keys):
        ref = outputs[ref_key]
        result = case.setdefault("compare", {})
        if ref_key in errors or not os.path.exists(ref):
            return
        for tool in tools:
            if tool.key == ref_key or tool.key in errors or not os.path.exists(outputs[tool.key]):
                continue
            got = compare(outputs[tool.key], ref)
            result[tool.key] = got
            if not got["identical"]:
                print(f"    {tool.key}: {describe(got)} vs {ref_key}", flush=True)
                if tool.key in fatal_keys:
                    self.failures.append(f"{case['name']}: {tool.label} ({tool.key}) is not "
                                         f"pixel-identical to {ref_key}: {describe(got)}")

    def cleanup(self, outputs, keep=()):
        if self.args.keep:
            return
        for key, path in outputs.items():
            if key not in keep and os.path.exists(path):
                os.remove(path)

    # -- cases -------------------------------------------------------------------------

    def baseline(self):
        print("interpreter baseline", flush=True)
        self.results["baseline_mb"] = baseline_rss(PY, self.env_ours,
                                                   "from osgeo import gdal; import numpy")
        self.results["cli_baseline_mb"] = baseline_rss(
            PY, self.env_ours, "import sys; from streaming_mosaic import cli; "
            "from streaming_mosaic.core import engine")
        startup = [run_child([PY, "-m", "streaming_mosaic", "--version"], env=self.env_ours)
                   for _ in range(3)]
        self.results["cli_startup_s"] = sorted(m["wall"] for m in startup)[1]
        print(f"  python3 + osgeo.gdal + numpy: {self.results['baseline_mb']:.0f} MB; "
              f"with the CLI and core imported: {self.results['cli_baseline_mb']:.0f} MB",
              flush=True)

    def mosaic_case(self, size, determinism):
        info = data.mosaic_set(grid=size["grid"], tile=size["tile"], overlap=size["overlap"],
                               noise=self.args.noise)
        folder = info["folder"]
        w, h = info["width"], info["height"]
        mpix = w * h / 1e6
        raw = data.raw_bytes(w, h, info["bands"], info["dtype"])
        need = raw * 8
        free = shutil.disk_usage(OUT).free
        if need > free:
            self.notes.append(f"size {size['name']} skipped: needs ~{need / 2**30:.0f} GiB of "
                              f"disk, {free / 2**30:.0f} GiB free")
            print("  " + self.notes[-1], flush=True)
            return None
        vrt = data.build_vrt(info)
        floor_src = data.uncompressed_mosaic(info, vrt)
        inputs = info["inputs"]
        print(f"case {size['name']}: {len(inputs)} inputs -> {w} x {h} px ({mpix:.0f} Mpix), "
              f"{size['repeats']} round(s)", flush=True)
        tools = [
            self.ours(inputs, "lzw"),
            self.translate(vrt, "lzw", 1, "gt-lzw-1", "gdal_translate VRT (NUM_THREADS=1)",
                           "ref-lzw"),
            self.translate(vrt, "lzw", "ALL_CPUS", "gt-lzw-all",
                           "gdal_translate VRT (NUM_THREADS=ALL_CPUS)", "ref-lzw"),
            self.ours(inputs, "none"),
            self.translate(vrt, "none", None, "gt-none", "gdal_translate VRT", "ref-none"),
            self.translate(floor_src, "none", None, "floor-none",
                           "gdal_translate of the finished mosaic (I/O floor)", "floor"),
            self.translate(floor_src, "lzw", "ALL_CPUS", "floor-lzw",
                           "gdal_translate of the finished mosaic (ALL_CPUS)", "floor"),
            self.naive(vrt),
        ]
        if pixfun_case.gdal_mosaic_available():  # GDAL >= 3.11
            tools.insert(3, Tool("gdal-mosaic", "gdal raster mosaic (NUM_THREADS=ALL_CPUS)", "LZW",
                                 pixfun_case.gdal_mosaic_argv(inputs, CO_LZW + ["NUM_THREADS=ALL_CPUS"]),
                                 self.env_gdal, "other"))
        if mpix > 100:  # the slowest baseline runs once on big mosaics
            tools[-1].repeats = 1
        if mpix <= self.scale["gdal_merge_max_mpix"]:
            tools.append(self.gdal_merge(inputs))
        if mpix <= self.scale["rio_merge_max_mpix"]:
            tools.append(self.rio_merge(os.path.join(folder, "inputs.txt")))
        case = {"name": size["name"], "kind": "mosaic", "width": w, "height": h,
                "mpix": mpix, "inputs": len(inputs), "raw_bytes": raw}
        outputs = self.run_tools(case, tools, size["repeats"], folder, "gt-lzw-1",
                                 {"sm-lzw", "sm-none"})
        if determinism:
            self.determinism(case, inputs, folder, outputs["gt-lzw-1"], determinism)
            self.budgets(case, inputs, folder, outputs["gt-lzw-1"], self.scale["budgets"])
        self.cleanup(outputs)
        self.results["cases"].append(case)
        return case

    def determinism(self, case, inputs, folder, ref, spec):
        print(f"  determinism ({case['name']}): THREADS {spec['threads']}, CHUNK_SIZE "
              f"{spec['chunks']}", flush=True)
        variants = [(f"THREADS={t}", ["--threads", str(t)]) for t in spec["threads"]]
        variants += [(f"CHUNK_SIZE={c} (block {256 if c < 512 else 512})",
                      ["--chunk", str(c), "--threads", "2"]) for c in spec["chunks"]]
        out = os.path.join(self.runs_dir, case["name"], "determinism.tif")
        for label, extra in variants:
            tool = self.ours(inputs, "lzw", extra, key="det", co_block=False)
            row = {"case": case["name"], "variant": label}
            try:
                m = run_child(tool.argv(out), cwd=folder, env=tool.env, output=out)
                got = compare(out, ref)
                row.update(m, compare=got)
                if not got["identical"]:
                    self.failures.append(f"determinism {case['name']} {label}: output differs "
                                         f"from gdal_translate: {describe(got)}")
                print(f"    {label:<28} {m['wall']:7.2f} s {m['rss_mb']:7.0f} MB "
                      f"{describe(got)}", flush=True)
            except ToolFailed as exc:
                row["error"] = str(exc)
                self.failures.append(f"determinism {case['name']} {label}: failed: {exc}")
                print(f"    {label} FAILED {exc}", flush=True)
            self.results["determinism"].append(row)
        if os.path.exists(out) and not self.args.keep:
            os.remove(out)

    def budgets(self, case, inputs, folder, ref, budgets):
        """Peak RSS against MEMORY_MB for a few budgets (one run each, pixels checked)."""
        print(f"  memory budgets ({case['name']}): MEMORY_MB {budgets}", flush=True)
        out = os.path.join(self.runs_dir, case["name"], "budget.tif")
        for mem in budgets:
            tool = self.ours(inputs, "lzw", key="budget")
            argv = tool.argv(out)
            argv[argv.index("--memory-mb") + 1] = str(mem)
            row = {"case": case["name"], "memory_mb": mem}
            try:
                m = run_child(argv, cwd=folder, env=tool.env, output=out)
                got = compare(out, ref)
                row.update(m, compare=got)
                if not got["identical"]:
                    self.failures.append(f"MEMORY_MB={mem} {case['name']}: output differs from "
                                         f"gdal_translate: {describe(got)}")
                print(f"    MEMORY_MB={mem:<6} {m['wall']:7.2f} s {m['rss_mb']:7.0f} MB "
                      f"{describe(got)}", flush=True)
            except ToolFailed as exc:
                row["error"] = str(exc)
                self.failures.append(f"MEMORY_MB={mem} {case['name']}: failed: {exc}")
            self.results.setdefault("budgets", []).append(row)
        if os.path.exists(out) and not self.args.keep:
            os.remove(out)

    def many_case(self, spec):
        info = data.many_set(n_small=spec["n_small"], small=spec["small"],
                             n_large=spec["n_large"], noise=self.args.noise)
        folder = info["folder"]
        w, h = info["width"], info["height"]
        n_s, n_l = len(info["small"]), len(info["large"])
        print(f"case many: {n_s:,} inputs of {spec['small']} px vs {n_l} of "
              f"{w // spec['n_large']} px -> {w} x {h} px", flush=True)
        vrts = {}
        build = {}
        for name in ("small", "large"):
            vrt = os.path.join(folder, f"{name}.vrt")
            listing = os.path.join(folder, f"{name}.txt")
            with open(listing, "w") as fh:
                fh.write("\n".join(info[name]) + "\n")
            try:  # gdalbuildvrt itself, measured once (not part of gdal_translate's time)
                build[name] = run_child(["gdalbuildvrt", "-q", "-input_file_list", listing,
                                         vrt], cwd=folder, env=self.env_gdal, output=vrt)
            except ToolFailed as exc:
                self.failures.append(f"many: gdalbuildvrt failed: {exc}")
                return None
            vrts[name] = vrt
        tools = [
            self.ours(info["small"], "lzw", key="sm-many", label=f"streaming_mosaic, {n_s:,} inputs"),
            self.ours(info["large"], "lzw", key="sm-few", label=f"streaming_mosaic, {n_l} inputs"),
            self.translate(vrts["small"], "lzw", 1, "gt-many",
                           f"gdal_translate VRT of {n_s:,} inputs (NUM_THREADS=1)", "ref-lzw"),
            self.translate(vrts["large"], "lzw", 1, "gt-few",
                           f"gdal_translate VRT of {n_l} inputs (NUM_THREADS=1)", "ref-lzw"),
        ]
        case = {"name": "many", "kind": "many", "width": w, "height": h, "mpix": w * h / 1e6,
                "inputs": n_s, "inputs_few": n_l, "tile_small": spec["small"],
                "raw_bytes": data.raw_bytes(w, h, info["bands"], info["dtype"]),
                "buildvrt": {k: v["wall"] for k, v in build.items()}}
        outputs = self.run_tools(case, tools, spec["repeats"], folder, "gt-few",
                                 {"sm-many", "sm-few"})
        self.cleanup(outputs)
        self.results["cases"].append(case)
        return case

    def mixed_case(self, spec):
        info = data.mixed_crs_set(grid=spec["grid"], tile=spec["tile"], overlap=spec["overlap"],
                                  noise=self.args.noise)
        folder = info["folder"]
        inputs = info["inputs"]
        # 10 m target pixels snapped to the grid (-tap): the zone 33 tiles stay on whole
        # pixels (read directly) and only the zone 32 tiles are warped.
        extra = ["--target-crs", info["target_crs"], "--pixel-size", "10", "--tap"]
        warm = os.path.join(self.runs_dir, "mixed-warmup.tif")
        tool = self.ours(inputs, "lzw", extra)
        try:  # learn the output grid (and warm the page cache)
            run_child(tool.argv(warm), cwd=folder, env=tool.env, output=warm)
        except ToolFailed as exc:
            self.failures.append(f"mixed CRS: streaming_mosaic failed: {exc}")
            return None
        from osgeo import gdal
        ds = gdal.Open(warm)
        gt, w, h = ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize
        ds = None
        os.remove(warm)
        te = [gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]]
        co = CO_LZW + ["NUM_THREADS=ALL_CPUS"]
        flags = [x for c in co for x in ("-co", c)]
        print(f"case mixed CRS: {len(inputs)} inputs in EPSG:32632 + EPSG:32633 -> "
              f"{info['target_crs']}, {w} x {h} px", flush=True)
        warp = Tool("gdalwarp", "gdalwarp (-multi, NUM_THREADS=ALL_CPUS)", "LZW",
                    lambda out: ["gdalwarp", "-q", "-t_srs", info["target_crs"], "-te",
                                 *map(repr, te), "-ts", str(w), str(h), "-r", "near",
                                 "-dstnodata", "0", "-multi", "-wo", "NUM_THREADS=ALL_CPUS",
                                 *flags, *inputs, out], self.env_gdal, "ref-lzw")
        exact = Tool("gdalwarp-exact", "gdalwarp -et 0 (exact transformer; pixel reference)",
                     "LZW", lambda out: warp.argv(out)[:2] + ["-et", "0"] + warp.argv(out)[2:],
                     self.env_gdal, "other", repeats=1)
        tools = [self.ours(inputs, "lzw", extra, key="sm-mixed",
                           label="streaming_mosaic (window-by-window warp)"), warp, exact]
        case = {"name": "mixed CRS", "kind": "mixed", "width": w, "height": h,
                "mpix": w * h / 1e6, "inputs": len(inputs),
                "raw_bytes": data.raw_bytes(w, h, info["bands"], info["dtype"])}
        # Pixels are compared with the exact transformer: gdalwarp's default approximate
        # one (-et 0.125) picks the neighbouring pixel near source pixel edges depending
        # on its chunking, so two correct tools differ there.
        outputs = self.run_tools(case, tools, spec["repeats"], folder, "gdalwarp-exact", set())
        self.cleanup(outputs)
        self.results["cases"].append(case)
        return case


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--readme", help="README to update between the bench markers")
    parser.add_argument("--memory-mb", type=int, default=256,
                        help="MEMORY_MB for our CLI and GDAL_CACHEMAX for GDAL (default 256)")
    parser.add_argument("--repeats", type=int, help="override the rounds of every case")
    parser.add_argument("--only", help="comma-separated cases: size names, many, mixed, dask, "
                        "harmonize, composites, remote, cog, pixfun, feather")
    parser.add_argument("--noise", type=float, default=0.002,
                        help="noise of the synthetic field (0.002: ~2x LZW compression)")
    parser.add_argument("--block", help="README block: write between <!-- bench:BLOCK:start --> "
                        "and <!-- bench:BLOCK:end --> (e.g. gdal-3.13, for `make bench-qgis344`)")
    parser.add_argument("--keep", action="store_true", help="keep every output in bench/out/runs")
    args = parser.parse_args(argv)

    bench = Bench(args)
    scale = bench.scale
    only = set(args.only.split(",")) if args.only else None
    wanted = lambda name: only is None or name in only  # noqa: E731
    print(f"benchmark scale {args.scale}: MEMORY_MB={args.memory_mb}, {os.cpu_count()} CPUs, "
          f"load {load_average():.1f}", flush=True)
    bench.baseline()
    for i, size in enumerate(scale["sizes"]):
        if not wanted(size["name"]):
            continue
        size = dict(size, repeats=args.repeats or size["repeats"])
        bench.mosaic_case(size, scale["determinism"] if i == 0 else None)
    if wanted("many"):
        bench.many_case(dict(scale["many"], repeats=args.repeats or scale["many"]["repeats"]))
    if wanted("mixed"):
        bench.mixed_case(dict(scale["mixed"], repeats=args.repeats or scale["mixed"]["repeats"]))

    if wanted("dask"):
        _dask_case(bench, args)

    if wanted("harmonize"):
        _harmonize_case(bench)

    if wanted("composites"):
        _composite_case(bench, args)

    if wanted("remote"):
        _remote_case(bench, args)

    if wanted("pixfun"):
        size = scale["sizes"][0]
        bench.results["pixfun"] = pixfun_case.run_case(bench, Tool, CO_LZW, size,
                                                       args.repeats or size["repeats"])

    if wanted("cog"):
        _cog_case(bench, args)

    if wanted("feather"):
        _feather_case(bench, args)

    res = bench.results
    res.update(finished=datetime.datetime.now().isoformat(timespec="seconds"),
               load_end=load_average(), failures=bench.failures, notes=bench.notes,
               slack_mb=SLACK_MB, growth_limit=GROWTH_LIMIT, machine=_machine(),
               git=_git())
    res["targets"] = report.targets(res)
    tag = f"-{args.block}" if args.block else ""
    with open(os.path.join(OUT, f"results-{args.scale}{tag}.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    where = report.write(res, args.readme, ROOT, OUT, block=args.block)
    print()
    print(report.markdown(res, "bench.png"))
    print(f"written: {where}")
    if bench.failures:
        print("\n" + "!" * 72 + "\nCORRECTNESS FAILURE\n" + "\n".join(bench.failures) + "\n"
              + "!" * 72, file=sys.stderr)
        return 1
    return 0


def _dask_case(bench, args):
    """DASK_SCHEDULER=local:2 against the local engine (bench/dask_case.py), when Dask is here."""
    import importlib.util
    if importlib.util.find_spec("distributed") is None:
        bench.notes.append("dask case skipped: the Python package distributed is not installed")
        return
    import dask_case
    res = dask_case.run_case(memory_mb=args.memory_mb, noise=args.noise)
    print(dask_case.markdown(res), flush=True)
    bench.results["dask"] = res
    if not res["identical"]:
        bench.failures.append("dask: local:2 output differs from the local engine's")


def _cog_case(bench, args):
    """COG=true against gdal_translate -of COG of the VRT (bench/cog_case.py)."""
    import cog_case
    res = cog_case.run_case(args.scale, args.memory_mb, args.repeats or 3, PY,
                            bench.env_ours["PYTHONPATH"], bench.runs_dir)
    print(cog_case.markdown(res), flush=True)
    bench.results["cog"] = res
    if not res["identical"]:
        bench.failures.append("cog: the full resolution differs from gdal_translate -of COG's")


def _composite_case(bench, args):
    """METHOD median and percentile on a deep stack (bench/composite_case.py)."""
    import composite_case
    rows = composite_case.run_case(memory_mb=args.memory_mb)
    print(composite_case.markdown(rows), flush=True)
    bench.results["composites"] = rows
    if not rows[0]["identical_to_numpy"]:
        bench.failures.append("composites: the median differs from numpy's nanmedian")


def _remote_case(bench, args):
    """The first size read over HTTP from nginx against local reads (bench/remote_case.py)."""
    import remote_case
    size = bench.scale["sizes"][0]
    case = remote_case.run_case(bench, dict(size, repeats=args.repeats or size["repeats"]))
    if case:
        text = remote_case.markdown(case)
        print(text, flush=True)
        bench.results["remote"] = case
        bench.results.setdefault("sections", []).append(text)


def _feather_case(bench, args):
    """METHOD=feather against otbcli_Mosaic -comp.feather large (bench/feather_case.py)."""
    import feather_case
    rows = feather_case.run_case(memory_mb=args.memory_mb, repeats=args.repeats or 3)
    print(feather_case.markdown(rows), flush=True)
    bench.results["feather"] = rows
    bench.results.setdefault("sections", []).append(feather_case.markdown(rows))
    if len(rows) < 2:
        bench.notes.append("feather case: otbcli_Mosaic not installed, OTB row missing")


def _harmonize_case(bench):
    """HARMONIZE none / gain / linear against OTB Mosaic band/rmse (tools/harmony_picture.py)."""
    import harmony_picture
    folder = tempfile.mkdtemp(prefix="bench-harmonize-")
    try:
        rows, _ = harmony_picture.measure(folder)
        many = harmony_picture.many_fit(os.path.join(folder, "many"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(harmony_picture.markdown(rows, many), flush=True)
    bench.results["harmonize"] = rows
    bench.results["harmonize_many_fit"] = many
    if not any(r["name"].startswith("OTB") for r in rows):
        bench.notes.append("harmonize case: otbcli_Mosaic not installed, OTB row missing")


def _git():
    """Commit and modified core files: the core changes while it is being tuned."""
    import subprocess
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "core",
                                "cli.py"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
        return {"head": head, "modified": [line[3:] for line in dirty if line.strip()]}
    except (OSError, subprocess.CalledProcessError):
        return {"head": "?", "modified": []}


def _machine():
    import numpy
    from osgeo import gdal
    try:
        import rasterio
        rio = rasterio.__version__
    except ImportError:
        rio = "-"
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": os.cpu_count(), "ram_gb": round(mem, 1), "gdal": gdal.__version__,
            "numpy": numpy.__version__, "rasterio": rio, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


if __name__ == "__main__":
    sys.exit(main())
