"""Make resources/harmonize.png (before/after HARMONIZE) and print the figures vs Orfeo ToolBox.

Run: ``/usr/bin/python3 tools/harmony_picture.py`` from the checkout (needs matplotlib;
otbcli_Mosaic for the comparison). The data is tools/harmony_data.py's biased tiles.
"""

import os
import subprocess
import sys
import tempfile
import time

import matplotlib
import numpy as np
from osgeo import gdal

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harmony_data import biased_tiles, relative_rmse, seam_ratio  # noqa: E402
from links import package_link  # noqa: E402

OTB = "/usr/bin/otbcli_Mosaic"


OTB_LZW = "?&gdal:co:COMPRESS=LZW&gdal:co:PREDICTOR=2&gdal:co:TILED=YES"  # as our output


def timed(cmd, env=None):
    """Run under /usr/bin/time; return (seconds, peak MB)."""
    got = timed_cpu(cmd, env)
    return got["seconds"], got["peak_mb"]


def timed_cpu(cmd, env=None):
    """Run under /usr/bin/time; return wall seconds, CPU (user + system) seconds, peak MB
    and the 1-minute load average when it started."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], capture_output=True,
                          text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    user, system, peak = proc.stderr.strip().splitlines()[-1].split()
    return {"seconds": time.monotonic() - started, "cpu_s": float(user) + float(system),
            "peak_mb": int(peak) / 1024, "load": load}


def _commands(tiles, folder, env):
    """name -> (command, output path, env) for our three runs and OTB's band/rmse."""
    ours = [sys.executable, "-m", "streaming_mosaic", *tiles["paths"], "--quiet",
            "--memory-mb", "256", "--method", "feather"]
    runs = {name: ([*ours, "-o", os.path.join(folder, f"{name}.tif"), *extra],
                   os.path.join(folder, f"{name}.tif"), env)
            for name, extra in (("none", []), ("gain", ["--harmonize", "gain"]),
                                ("linear", ["--harmonize", "linear"]))}
    if os.path.exists(OTB):
        # OTB writes uncompressed GeoTIFF by default; ours is LZW: OTB is given LZW too.
        out = os.path.join(folder, "otb.tif")
        runs["OTB band/rmse"] = ([OTB, "-il", *tiles["paths"], "-out", out + OTB_LZW, "uint16",
                                  "-comp.feather", "large", "-harmo.method", "band",
                                  "-harmo.cost", "rmse", "-nodata", "0", "-ram", "256"],
                                 out, None)
    return runs


def measure(folder, repeats=3):
    """Run none / gain / linear (feather) and OTB's band/rmse on the biased tiles,
    ``repeats`` times interleaved (load on a shared machine changes from run to run).

    Returns
    -------
    (rows, results)
        ``rows``: one dict per run (name, rmse_pct, seam_ratio, seconds and cpu_s: medians,
        peak_mb: max, load: median at the starts); ``results``: {name: (seconds, peak MB,
        array)}.
    """
    tiles = biased_tiles(folder, seed=11, grid=(4, 4), tile=(700, 560), overlap=120, bands=1)
    field, rects = tiles["field"], tiles["rects"]
    h, w = field.shape[1:]
    env = dict(os.environ, PYTHONPATH=package_link(os.path.join(folder, "pkg")))
    runs = _commands(tiles, folder, env)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (cmd, _out, run_env) in runs.items():
            times[name].append(timed_cpu(cmd, run_env))
    rows, results = [], {}
    for name, (_cmd, out, _env) in runs.items():
        ds = gdal.Open(out)
        if name.startswith("OTB"):  # OTB pads its grid: cut it to the mosaic's extent
            ds = gdal.Translate("/vsimem/otb.tif", ds, projWin=(500000, 5000000,
                                                                500000 + w * 10,
                                                                5000000 - h * 10))
        arr = ds.ReadAsArray()[None]
        got = {key: float(np.median([t[key] for t in times[name]]))
               for key in ("seconds", "cpu_s", "load")}
        got["peak_mb"] = max(t["peak_mb"] for t in times[name])
        results[name] = (got["seconds"], got["peak_mb"], arr)
        valid = arr != 0
        rows.append(dict(name=name, rmse_pct=100 * max(relative_rmse(arr, field, valid)),
                         seam_ratio=seam_ratio(arr, field, rects), **got))
    return rows, results


def many_fit(folder, count=32):
    """Fit HARMONIZE=gain on ``count`` x ``count`` small overlapping inputs (as
    tests/unit/test_harmonize.py's thousand inputs); returns a dict of the fit's wall and
    CPU seconds, its pairs and the load average."""
    sys.path.insert(0, os.path.dirname(HERE))
    package_link(os.path.join(folder, "pkg"))
    sys.path.insert(0, os.path.join(folder, "pkg"))
    from streaming_mosaic.core import harmonize
    from streaming_mosaic.core.options import Options
    from streaming_mosaic.core.plan import make_plan
    from synth import write_raster
    rng = np.random.default_rng(7)
    field = rng.uniform(1000, 3000, (count * 10 + 10, count * 10 + 10))
    paths = [write_raster(os.path.join(folder, f"s{r}_{c}.tif"),
                          (field[r * 10:r * 10 + 20, c * 10:c * 10 + 20]
                           * rng.uniform(0.8, 1.2)).astype("uint16")[None],
                          (500000 + c * 100.0, 10, 0, 5000000 - r * 100.0, 0, -10),
                          nodata=0, options=["COMPRESS=NONE"])
             for r in range(count) for c in range(count)]
    plan = make_plan(Options(inputs=paths, harmonize="gain", memory_mb=64))
    load, cpu, started = os.getloadavg()[0], time.process_time(), time.monotonic()
    harmony = harmonize.fit(plan)
    return {"inputs": len(paths), "pairs": harmony.pairs,
            "seconds": time.monotonic() - started, "cpu_s": time.process_time() - cpu,
            "load": load}


def markdown(rows, many=None):
    """The comparison as a Markdown table (and the many-inputs fit time when given)."""
    lines = ["| run (feather) | RMSE vs field | seam ratio | time s | CPU s | peak MB | load |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['rmse_pct']:.2f} % | {r['seam_ratio']:.2f} | "
              f"{r['seconds']:.1f} | {r['cpu_s']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['load']:.1f} |" for r in rows]
    if many:
        lines.append(f"\nHARMONIZE=gain fit on {many['inputs']:,} small inputs "
                     f"({many['pairs']:,} pairs, MEMORY_MB=64): {many['seconds']:.2f} s, "
                     f"{many['cpu_s']:.2f} CPU s (load {many['load']:.1f}).")
    return "\n".join(lines)


def main():
    rows, results = measure(tempfile.mkdtemp(prefix="harmonize-"))
    print(markdown(rows, many_fit(tempfile.mkdtemp(prefix="harmonize-many-"))))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, name, title in ((axes[0], "none", "feather only"),
                            (axes[1], "linear", "feather + HARMONIZE=linear")):
        arr = results[name][2][0].astype(float)
        lo, hi = np.percentile(arr[arr > 0], (1, 99))
        ax.imshow(arr, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    path = os.path.join(os.path.dirname(HERE), "resources", "harmonize.png")
    fig.savefig(path, dpi=80)
    print("wrote", path)


if __name__ == "__main__":
    main()
