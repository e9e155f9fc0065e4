#!/usr/bin/python3
"""The ``composites`` case: METHOD median and percentile on a deep stack, against mean.

    /usr/bin/python3 bench/run.py --only composites

A stack of ``depth`` fully overlapping acquisitions (uint16, nodata collars and holes, as
tools/synth.py makes them) is mosaicked with median, percentile 90 and mean (the fold
rule, for scale), each a child process timed with its peak RSS. The median is checked
against numpy's nanmedian of the stacked inputs (rounded half to even), every pixel.
"""

import os
import shutil
import sys
import tempfile

import numpy as np
from osgeo import gdal

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from harmony_picture import timed  # noqa: E402
from links import package_link  # noqa: E402

from synth import smooth_field, write_raster  # noqa: E402

RUNS = (("median", ["--method", "median"]),
        ("percentile 90", ["--method", "percentile", "--percentile", "90"]),
        ("mean", ["--method", "mean"]))


def stack(folder, depth, size, seed=5):
    """``depth`` co-registered acquisitions with holes; returns their paths and the stack."""
    rng = np.random.default_rng(seed)
    gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    paths, arrays = [], []
    for i in range(depth):
        data = smooth_field(rng, size, size, 200, 12000, "uint16", 0.05)
        y, x = rng.integers(0, size // 2, 2)
        data[y:y + size // 3, x:x + size // 3] = 0  # a cloud hole
        paths.append(write_raster(os.path.join(folder, f"s2_{i:03d}.tif"), data[None], gt,
                                  nodata=0))
        arrays.append(data)
    return paths, np.stack(arrays)


def run_case(depth=24, size=1500, memory_mb=256):
    folder = tempfile.mkdtemp(prefix="bench-composites-")
    try:
        paths, arrays = stack(folder, depth, size)
        env = dict(os.environ, PYTHONPATH=package_link(os.path.join(folder, "pkg")))
        rows = []
        for name, args in RUNS:
            out = os.path.join(folder, f"{name.split()[0]}.tif")
            secs, mb = timed([sys.executable, "-m", "streaming_mosaic", *paths, "-o", out,
                              "--quiet", "--memory-mb", str(memory_mb), *args], env)
            rows.append(dict(name=name, seconds=secs, peak_mb=mb, depth=depth,
                             mpix=size * size / 1e6))
        ds = gdal.Open(os.path.join(folder, "median.tif"))
        got = ds.ReadAsArray()
        ds = None
        values = np.where(arrays == 0, np.nan, arrays.astype(np.float64))
        with np.errstate(all="ignore"):
            want = np.nan_to_num(np.rint(np.nanmedian(values, axis=0)), nan=0).astype(np.uint16)
        rows[0]["identical_to_numpy"] = bool(np.array_equal(got, want))
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def markdown(rows):
    lines = [f"| {rows[0]['depth']} inputs, {rows[0]['mpix']:.1f} Mpix | time s | peak MB |",
             "|---|---|---|"]
    lines += [f"| {r['name']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run_case()))
