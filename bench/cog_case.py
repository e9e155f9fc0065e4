#!/usr/bin/python3
"""The ``cog`` case: COG=true against ``gdal_translate -of COG`` of the gdalbuildvrt VRT.

    /usr/bin/python3 bench/run.py --only cog

Both write the same COG: LZW + PREDICTOR=2, 512 px blocks, AVERAGE overviews, the
COG driver compressing on every CPU (NUM_THREADS=ALL_CPUS for GDAL; our run gives it
THREADS). They run interleaved, each a child process measured for wall and CPU time and
peak RSS (GDAL_CACHEMAX = MEMORY_MB for gdal_translate). The full resolutions must be
identical, every pixel, and so must every overview level (ours take the COG driver's
sizes: an odd level rounded down).
"""

import os
import sys

import numpy as np
from osgeo import gdal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import data  # noqa: E402
from links import package_link  # noqa: E402
from measure import load_average, run_child, summarize  # noqa: E402

TILE = {"ci": 240, "small": 3000, "large": 3000}  # 3000: the 8600 x 8600 mosaic
CO = ["COMPRESS=LZW", "PREDICTOR=2", "BLOCKSIZE=512", "RESAMPLING=AVERAGE", "BIGTIFF=IF_SAFER",
      "NUM_THREADS=ALL_CPUS"]


def commands(inputs, vrt, memory_mb, py, pkg):
    """(key, argv(out), env) of the two tools."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GDAL_", "CPL_")) and k != "PYTHONPATH"}
    ours = ["--cog", "--compress", "lzw", "--memory-mb", str(memory_mb), "--quiet",
            "--co", "BLOCKXSIZE=512", "--co", "BLOCKYSIZE=512"]
    flags = [x for c in CO for x in ("-co", c)]
    return [("sm-cog", lambda out: [py, "-m", "streaming_mosaic", *inputs, "-o", out, *ours],
             dict(base, PYTHONPATH=pkg)),
            ("gt-cog", lambda out: ["gdal_translate", "-q", "-of", "COG", *flags, vrt, out],
             dict(base, GDAL_CACHEMAX=str(memory_mb)))]


def same_pixels(a, b, rows=512):
    """(full resolution identical, [per overview level: identical, or None when sizes differ])."""
    da, db = gdal.Open(a), gdal.Open(b)
    full = (da.RasterXSize, da.RasterYSize) == (db.RasterXSize, db.RasterYSize)
    for y in range(0, da.RasterYSize, rows) if full else ():
        h = min(rows, da.RasterYSize - y)
        if not np.array_equal(da.ReadAsArray(0, y, da.RasterXSize, h),
                              db.ReadAsArray(0, y, db.RasterXSize, h)):
            full = False
            break
    levels = []
    ba, bb = da.GetRasterBand(1), db.GetRasterBand(1)
    for k in range(min(ba.GetOverviewCount(), bb.GetOverviewCount())):
        oa = [da.GetRasterBand(i + 1).GetOverview(k) for i in range(da.RasterCount)]
        ob = [db.GetRasterBand(i + 1).GetOverview(k) for i in range(db.RasterCount)]
        if (oa[0].XSize, oa[0].YSize) != (ob[0].XSize, ob[0].YSize):
            levels.append(None)
            continue
        levels.append(all(np.array_equal(x.ReadAsArray(), y.ReadAsArray())
                          for x, y in zip(oa, ob)))
    return full, levels


def run_case(scale="small", memory_mb=256, repeats=3, py="/usr/bin/python3", pkg=None,
             outdir=None):
    info = data.mosaic_set(grid=3, tile=TILE[scale], overlap=200)
    folder = info["folder"]
    vrt = data.build_vrt(info)
    outdir = outdir or folder
    tools = commands(info["inputs"], vrt, memory_mb, py, pkg)
    outputs = {key: os.path.join(outdir, f"{key}.tif") for key, _argv, _env in tools}
    runs = {key: [] for key in outputs}
    for r in range(repeats):
        order = tools if r % 2 == 0 else tools[::-1]
        for key, argv, env in order:
            m = run_child(argv(outputs[key]), cwd=folder, env=env, output=outputs[key])
            runs[key].append(m)
            print(f"    [{r + 1}/{repeats}] {key:<8} {m['wall']:7.2f} s "
                  f"{m['user'] + m['sys']:6.1f} s CPU {m['rss_mb']:6.0f} MB load {m['load']:.1f}",
                  flush=True)
    full, levels = same_pixels(outputs["sm-cog"], outputs["gt-cog"])
    summary = {key: summarize(v) for key, v in runs.items()}
    result = {"width": info["width"], "height": info["height"], "gdal": gdal.__version__,
              "summary": summary, "identical": full, "levels": levels, "load": load_average(),
              "ratio": summary["sm-cog"]["wall"] / summary["gt-cog"]["wall"],
              "cpu_ratio": summary["sm-cog"]["cpu_s"] / summary["gt-cog"]["cpu_s"]}
    for path in outputs.values():
        if os.path.exists(path):
            os.remove(path)
    return result


def markdown(res):
    s, g = res["summary"]["sm-cog"], res["summary"]["gt-cog"]
    levels = ", ".join("-" if x is None else ("same" if x else "DIFFER") for x in res["levels"])
    return "\n".join([
        f"| COG, {res['width']} x {res['height']} px, GDAL {res['gdal']} | wall s | CPU s | "
        "peak MB | size MB |",
        "|---|---|---|---|---|",
        f"| streaming_mosaic --cog | {s['wall']:.1f} | {s['cpu_s']:.1f} | {s['rss_mb']:.0f} | "
        f"{s['out_bytes'] / 2**20:.0f} |",
        f"| gdal_translate -of COG of the VRT | {g['wall']:.1f} | {g['cpu_s']:.1f} | "
        f"{g['rss_mb']:.0f} | {g['out_bytes'] / 2**20:.0f} |",
        f"| ratio (ours / GDAL) | {res['ratio']:.2f}x | {res['cpu_ratio']:.2f}x | | |",
        "",
        f"Full resolution identical: {res['identical']}; overview levels: {levels} "
        f"(-: sizes differ); load average {res['load']:.1f}."])


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(TILE), default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args()
    pkg = package_link(os.path.join(data.OUT, "runs", "cog", "pkg"))
    print(markdown(run_case(args.scale, args.memory_mb, args.repeats, pkg=pkg)))
