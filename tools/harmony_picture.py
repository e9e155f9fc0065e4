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


def timed(cmd, env=None):
    """Run under /usr/bin/time; return (seconds, peak MB)."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return time.monotonic() - started, int(proc.stderr.strip().splitlines()[-1]) / 1024


def measure(folder):
    """Run none / gain / linear (feather) and OTB's band/rmse on the biased tiles.

    Returns
    -------
    (rows, results)
        ``rows``: one dict per run (name, rmse_pct, seam_ratio, seconds, peak_mb);
        ``results``: {name: (seconds, peak MB, array)}.
    """
    tiles = biased_tiles(folder, seed=11, grid=(4, 4), tile=(700, 560), overlap=120, bands=1)
    field, rects = tiles["field"], tiles["rects"]
    h, w = field.shape[1:]
    env = dict(os.environ, PYTHONPATH=package_link(os.path.join(folder, "pkg")))
    results = {}
    for name, args in (("none", ["--method", "feather"]),
                       ("gain", ["--method", "feather", "--harmonize", "gain"]),
                       ("linear", ["--method", "feather", "--harmonize", "linear"])):
        out = os.path.join(folder, f"{name}.tif")
        results[name] = timed([sys.executable, "-m", "streaming_mosaic", *tiles["paths"],
                               "-o", out, "--quiet", "--memory-mb", "256", *args], env)
        results[name] += (gdal.Open(out).ReadAsArray()[None],)
    if os.path.exists(OTB):
        out = os.path.join(folder, "otb.tif")
        secs, mb = timed([OTB, "-il", *tiles["paths"], "-out", out, "uint16", "-comp.feather",
                          "large", "-harmo.method", "band", "-harmo.cost", "rmse", "-nodata",
                          "0", "-ram", "256"])
        cut = gdal.Translate("/vsimem/otb.tif", out, projWin=(500000, 5000000, 500000 + w * 10,
                                                             5000000 - h * 10))
        results["OTB band/rmse"] = (secs, mb, cut.ReadAsArray()[None])
    rows = []
    for name, (secs, mb, arr) in results.items():
        valid = arr != 0
        rows.append(dict(name=name, rmse_pct=100 * max(relative_rmse(arr, field, valid)),
                         seam_ratio=seam_ratio(arr, field, rects), seconds=secs, peak_mb=mb))
    return rows, results


def markdown(rows):
    """The comparison as a Markdown table."""
    lines = ["| run (feather) | RMSE vs field | seam ratio | time s | peak MB |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['rmse_pct']:.2f} % | {r['seam_ratio']:.2f} | "
              f"{r['seconds']:.1f} | {r['peak_mb']:.0f} |" for r in rows]
    return "\n".join(lines)


def main():
    rows, results = measure(tempfile.mkdtemp(prefix="harmonize-"))
    print(markdown(rows))
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
