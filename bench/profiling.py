#!/usr/bin/python3
"""Where streaming_mosaic's time goes, on the compressed 8600 x 8600 reference case.

    /usr/bin/python3 bench/profiling.py [--tile 3000] [--memory-mb 256] [--no-sweep]
        [--case mosaic|many] [--compress lzw|none] [--repeats 2] [--flush-each-window]

1. Timing breakdown: one in-process run per THREADS value (1 and 2) with timers
   wrapped around the pipeline stages (reading inputs, compositing, finalizing,
   writing into the GeoTIFF driver, flushing, the writer waiting for workers);
   each stage shows its wall time and the CPU time of the calling thread, summed
   over threads (GDAL's own compression threads are not counted there, so a
   WriteRaster whose thread CPU equals its wall time compresses in the writer).
2. cProfile of a THREADS=1 run: the main (writer) thread and the worker thread
   are profiled separately and merged.
3. Sweeps as child processes (``/usr/bin/time``): MEMORY_MB (which sets our GDAL
   cache to a quarter of it and the window size) and THREADS for our CLI; the
   GDAL_CACHEMAX / NUM_THREADS of gdal_translate; gdal_translate of the finished
   uncompressed mosaic (compression alone) and a read-only pass over the VRT.

Writes bench/out/profile.md and prints it.
"""

import argparse
import collections
import cProfile
import functools
import io
import os
import pstats
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import data  # noqa: E402
from measure import run_child  # noqa: E402

PY = "/usr/bin/python3"
PKG = os.path.join(data.OUT, "pkg")
CO_LZW = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=LZW", "PREDICTOR=2",
          "BIGTIFF=IF_SAFER"]


def _link_package():
    os.makedirs(PKG, exist_ok=True)
    link = os.path.join(PKG, "streaming_mosaic")
    if not os.path.lexists(link):
        os.symlink(data.ROOT, link)
    if PKG not in sys.path:
        sys.path.insert(0, PKG)


class Timers:
    """Thread-safe accumulated seconds and calls per stage."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seconds = collections.defaultdict(float)
        self.cpu = collections.defaultdict(float)
        self.calls = collections.Counter()

    def wrap(self, name, func):
        @functools.wraps(func)
        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                dt, dc = time.perf_counter() - t0, time.thread_time() - c0
                with self.lock:
                    self.seconds[name] += dt
                    self.cpu[name] += dc
                    self.calls[name] += 1
        return timed


def instrumented_run(inputs, out, threads, memory_mb, profile=False, compress="lzw",
                     flush_each_window=False):
    """Run the engine in-process with stage timers (and cProfile); return (wall, timers, stats)."""
    import dataclasses

    from streaming_mosaic import cli
    from streaming_mosaic.core import composite, engine, readers, render, writer
    from streaming_mosaic.core.executors import local as local_executor

    timers = Timers()
    saved = []

    def patch(module, name, label):
        original = getattr(module, name)
        saved.append((module, name, original))
        setattr(module, name, timers.wrap(label, original))

    if flush_each_window:
        # Experiment: the writer flushes (compresses) its dirty blocks after every window,
        # so readers never evict, and compress, output blocks in the shared block cache.
        plain_write = writer.write_window

        def write_and_flush(ds, path, window, array):
            plain_write(ds, path, window, array)
            ds.FlushCache()
        saved.append((writer, "write_window", plain_write))
        writer.write_window = write_and_flush
    patch(readers, "_read_into", "read: GDAL ReadAsArray (decompress inputs)")
    patch(render, "read", "read: total incl. validity masks")
    patch(render, "new_acc", "composite: allocate accumulators")
    patch(render, "finalize", "composite: finalize (cast, nodata)")
    patch(local_executor, "render_window", "worker: render_window total")
    patch(writer, "write_window", "writer: WriteRaster (blocks, compression)")
    patch(writer, "flush", "writer: FlushCache (checkpoints, end)")
    patch(local_executor.LocalExecutor, "next", "writer: waiting for the next window")
    patch(engine, "make_plan", "plan")
    patch(writer, "publish", "writer: publish")
    rule = composite.RULES["last"]
    composite.RULES["last"] = dataclasses.replace(
        rule, update=timers.wrap("composite: rule.update (copyto where valid)", rule.update))

    profiles = []
    local = threading.local()
    if profile:
        inner = local_executor.render_window

        def profiled_render(*args, **kwargs):
            prof = getattr(local, "prof", None)
            if prof is None:
                prof = local.prof = cProfile.Profile()
                profiles.append(prof)
            prof.enable()
            try:
                return inner(*args, **kwargs)
            finally:
                prof.disable()
        saved.append((local_executor, "render_window", inner))
        local_executor.render_window = profiled_render

    argv = [*inputs, "-o", out, "--compress", compress, "--memory-mb", str(memory_mb),
            "--threads", str(threads), "--quiet", "--co", "BLOCKXSIZE=512", "--co",
            "BLOCKYSIZE=512"]
    options = cli.options_from_args(cli.build_parser().parse_args(argv))
    main_prof = cProfile.Profile() if profile else None
    try:
        t0 = time.perf_counter()
        if main_prof:
            main_prof.enable()
        result = engine.run(options)
        if main_prof:
            main_prof.disable()
        wall = time.perf_counter() - t0
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)
        composite.RULES["last"] = rule
    stats = None
    if profile:
        buf = io.StringIO()
        stats = pstats.Stats(main_prof, stream=buf)
        for p in profiles:
            stats.add(p)
        stats = (stats, buf)
    return wall, timers, stats, result


def breakdown_table(runs):
    names = []
    for _, _, timers, _ in runs:
        for n in timers.seconds:
            if n not in names:
                names.append(n)
    head = "| stage | " + " | ".join(f"THREADS={t}: wall / thread CPU (s)" for t, *_ in runs) + " |"
    lines = [head, "|---|" + "---:|" * len(runs)]
    lines.append("| **wall time** | " + " | ".join(f"**{w:.2f}**" for _, w, _, _ in runs) + " |")
    for n in sorted(names):
        cells = []
        for _, _, timers, _ in runs:
            s = timers.seconds.get(n)
            cells.append("" if s is None else
                         f"{s:.2f} / {timers.cpu[n]:.2f} ({timers.calls[n]}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| windows / chunk | " + " | ".join(
        f"{r.windows} windows" for _, _, _, r in runs) + " |")
    return lines


def top_functions(stats, key, n):
    stats, buf = stats
    buf.seek(0)
    buf.truncate()
    stats.sort_stats(key).print_stats(n)
    text = buf.getvalue()
    keep = []
    started = False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            keep.append(line.replace(data.ROOT + "/", "").replace("/usr/lib/python3/dist-packages/", ""))
    return keep


def sweep(info, vrt, floor_src, memory_mb, out_dir, repeats=2):
    """Every configuration once per round, rounds interleaved; min and median wall time."""
    env_ours = {k: v for k, v in os.environ.items() if not k.startswith("GDAL_")}
    env_ours["PYTHONPATH"] = PKG
    folder = info["folder"]
    inputs = info["inputs"]
    out = os.path.join(out_dir, "sweep.tif")
    jobs = []  # (label, plan, argv, env, output)

    def ours(mem, threads):
        argv = [PY, "-m", "streaming_mosaic", *inputs, "-o", out, "--compress", "lzw",
                "--memory-mb", str(mem), "--threads", str(threads), "--quiet", "--co",
                "BLOCKXSIZE=512", "--co", "BLOCKYSIZE=512"]
        jobs.append((f"streaming_mosaic MEMORY_MB={mem} THREADS={threads}",
                     run_plan(argv, folder, env_ours), argv, env_ours, out))

    def translate(src, cache, threads, label):
        env = dict(env_ours, GDAL_CACHEMAX=str(cache))
        flags = [x for c in CO_LZW + [f"NUM_THREADS={threads}"] for x in ("-co", c)]
        jobs.append((label, "", ["gdal_translate", "-q", *flags, src, out], env, out))

    for mem in (64, 128, memory_mb, 1024):
        ours(mem, 1)
        ours(mem, 2)
    for cache in (64, memory_mb, 1024):
        translate(vrt, cache, 1, f"gdal_translate VRT GDAL_CACHEMAX={cache} NUM_THREADS=1")
        translate(vrt, cache, "ALL_CPUS", f"gdal_translate VRT GDAL_CACHEMAX={cache} ALL_CPUS")
    translate(floor_src, memory_mb, 1, "gdal_translate finished mosaic -> LZW, NUM_THREADS=1 "
              "(compression alone)")
    translate(floor_src, memory_mb, "ALL_CPUS", "gdal_translate finished mosaic -> LZW, ALL_CPUS")
    env_read = dict(env_ours, GDAL_CACHEMAX=str(memory_mb))
    # Reading alone: decoded window by window and thrown away.
    jobs.append(("read-only pass over the VRT, 512 px windows (decode + GDAL's compositing)", "",
                 [PY, "-c", READ_ONLY, vrt], env_read, None))
    jobs.append(("read-only pass over the finished uncompressed mosaic", "",
                 [PY, "-c", READ_ONLY, floor_src], env_read, None))
    jobs.append(("read-only pass over each input once, 512-row strips (LZW decode)", "",
                 [PY, "-c", READ_INPUTS, *inputs], env_read, None))
    results = {label: [] for label, *_ in jobs}
    for r in range(repeats):
        shift = (r * 7) % len(jobs)
        for label, _, argv, env, output in jobs[shift:] + jobs[:shift]:
            results[label].append(run_child(argv, cwd=folder, env=env, output=output))
    if os.path.exists(out):
        os.remove(out)
    lines = [f"{repeats} interleaved round(s); load average now {os.getloadavg()[0]:.1f}", "",
             "| run | plan | time min (s) | time median (s) | CPU (s) | peak RSS (MB) |",
             "|---|---|---:|---:|---:|---:|"]
    for label, plan, *_ in jobs:
        ms = results[label]
        walls = sorted(m["wall"] for m in ms)
        cpu = sorted(m["user"] + m["sys"] for m in ms)
        lines.append(f"| {label} | {plan} | {walls[0]:.2f} | {walls[len(walls) // 2]:.2f} | "
                     f"{cpu[len(cpu) // 2]:.2f} | {max(m['rss_mb'] for m in ms):.0f} |")
    return lines


READ_ONLY = """
import sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
w, h = ds.RasterXSize, ds.RasterYSize
for y in range(0, h, 512):
    for x in range(0, w, 512):
        ds.ReadRaster(x, y, min(512, w - x), min(512, h - y))
"""

READ_INPUTS = """
import sys
from osgeo import gdal
for path in sys.argv[1:]:
    ds = gdal.Open(path)
    w, h = ds.RasterXSize, ds.RasterYSize
    for y in range(0, h, 512):
        ds.ReadRaster(0, y, w, min(512, h - y))
"""


def run_plan(argv, folder, env):
    import subprocess
    proc = subprocess.run(argv + ["--plan"], cwd=folder, env=env, capture_output=True,
                          text=True)
    for line in proc.stdout.splitlines():
        if "window(s) of" in line:
            return line.split(";")[1].strip()
    return ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", type=int, default=3000, help="tile side (3000: 8600^2 mosaic)")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--case", choices=["mosaic", "many"], default="mosaic",
                        help="mosaic: 3x3 tiles (--tile); many: the 10,000 x 64 px inputs "
                             "of the small scale")
    parser.add_argument("--compress", default="lzw", help="COMPRESSION of the profiled runs")
    parser.add_argument("--flush-each-window", action="store_true",
                        help="experiment: FlushCache the output after every window")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the sweep")
    args = parser.parse_args(argv)

    _link_package()
    if args.case == "many":
        info = data.many_set(n_small=100, small=64, n_large=4)
        info = dict(info, inputs=info["small"])
        args.no_sweep = True
    else:
        info = data.mosaic_set(grid=3, tile=args.tile, overlap=200)
        vrt = data.build_vrt(info)
        floor_src = data.uncompressed_mosaic(info, vrt)
    out_dir = os.path.join(data.OUT, "runs", "profile")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "profile.tif")
    inputs = [os.path.join(info["folder"], p) for p in info["inputs"]]
    w, h = info["width"], info["height"]
    import subprocess
    head = subprocess.run(["git", "-C", data.ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    lines = [f"# Profile (commit {head}, load average {os.getloadavg()[0]:.1f}): "
             f"{len(inputs)} inputs -> {w} x {h} px, 3 x uint16, MEMORY_MB={args.memory_mb}, "
             f"COMPRESSION={args.compress}", ""]

    from osgeo import gdal
    cache_before = gdal.GetCacheMax()
    runs = []
    for threads in (1, 2):
        wall, timers, _, result = instrumented_run(inputs, out, threads, args.memory_mb,
                                                   compress=args.compress,
                                                   flush_each_window=args.flush_each_window)
        runs.append((threads, wall, timers, result))
        print(f"THREADS={threads}: {wall:.2f} s", flush=True)
    experiments = ["flush each window"] if args.flush_each_window else []
    if experiments:
        lines += [f"Experiments (in-process patches, not the shipped code): "
                  f"{', '.join(experiments)}.", ""]
    lines += ["## Timing breakdown (in-process, stage timers summed over threads)", ""]
    lines += breakdown_table(runs)
    lines += ["", f"Windows: {runs[0][3].windows}; GDAL cache limit restored after the runs: "
              f"{cache_before == gdal.GetCacheMax()}.", ""]

    wall, _, stats, _ = instrumented_run(inputs, out, 1, args.memory_mb, profile=True,
                                         compress=args.compress,
                                         flush_each_window=args.flush_each_window)
    print(f"cProfile THREADS=1: {wall:.2f} s", flush=True)
    lines += [f"## cProfile, THREADS=1 ({wall:.2f} s under the profiler), by total time", "",
              "```"] + top_functions(stats, "tottime", args.top) + ["```", ""]
    lines += ["## cProfile, by cumulative time", "", "```"] + \
        top_functions(stats, "cumulative", args.top) + ["```", ""]
    if os.path.exists(out):
        os.remove(out)

    if not args.no_sweep:
        lines += ["## Sweeps (child processes)", ""]
        lines += sweep(info, vrt, floor_src, args.memory_mb, out_dir, args.repeats)
    text = "\n".join(lines) + "\n"
    name = "profile" + ("" if args.case == "mosaic" else f"-{args.case}") + \
        ("" if args.compress == "lzw" else f"-{args.compress}")
    name += "".join(f"-{e.split()[0]}" for e in experiments)
    path = os.path.join(data.OUT, name + ".md")
    with open(path, "w") as fh:
        fh.write(text)
    print(text)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
