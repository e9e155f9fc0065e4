"""make screenshots: dialog screenshots and a quicklook picture for the README.

1. Generates small demo data under the build folder (3x3 overlapping tiles, and a
   plan set with one tile in another UTM zone, another resolution and no nodata).
2. quicklook.png: mosaics the tiles with the CLI and draws each input's footprint
   over the result with matplotlib (Agg). Needs no QGIS and no display.
3. mosaic_dialog.png, mosaic_log.png, plan_log.png, toolbox.png: starts the real
   QGIS desktop under Xvfb (xvfb-run) with a throwaway profile and runs
   tools/screenshot_qgis.py in it (``--code``), which opens the algorithm dialogs,
   presses Run and grabs the widgets. QGIS runs with a throwaway home folder holding
   the demo data in ``mosaics/``; the output is given as ``~/mosaics/demo_mosaic.tif``
   and the logs show that home as ``~``, so no screenshot shows the build folder.

Every external command runs under a timeout, so a hung QGIS cannot hang make.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from links import package_link  # noqa: E402

from synth import tile_set, write_raster  # noqa: E402

PY = "/usr/bin/python3"
DATA_VERSION = 5  # bump when the demo data below changes
TILE = 400        # tile side (pixels)
OVERLAP = 60
SCREEN = "1600x1400x24"
QGIS_OUTPUTS = ("toolbox.png", "mosaic_dialog.png", "mosaic_log.png", "plan_log.png")


def log(message):
    print(f"screenshots: {message}", flush=True)


# ---------------------------------------------------------------- demo data

def demo_data(build):
    """Write (or reuse) the demo tiles; return (tiles, plan_inputs)."""
    data = os.path.join(build, "data")
    stamp = os.path.join(data, "params.json")
    params = {"version": DATA_VERSION, "tile": TILE, "overlap": OVERLAP}
    tiles_dir = os.path.join(data, "tiles")
    plan_dir = os.path.join(data, "plan")
    if not os.path.exists(stamp) or json.load(open(stamp)) != params:
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(tiles_dir)
        os.makedirs(plan_dir)
        log(f"generating 3x3 demo tiles of {TILE} px in {tiles_dir}")
        tile_set(tiles_dir, seed=7, grid=(3, 3), size=(TILE, TILE), overlap=OVERLAP, bands=3,
                 dtype="uint8", nodata=0, holes=False, collar=4, low=25, high=235, noise=0.004)
        _plan_extras(tiles_dir, plan_dir)
        with open(stamp, "w") as fh:
            json.dump(params, fh)
    tiles = sorted(os.path.join(tiles_dir, f) for f in os.listdir(tiles_dir) if f.endswith(".tif"))
    plan_inputs = tiles[:4] + sorted(
        os.path.join(plan_dir, f) for f in os.listdir(plan_dir) if f.endswith(".tif"))
    return tiles, plan_inputs


def _plan_extras(tiles_dir, plan_dir):
    """One tile in UTM zone 34 at 15 m with no nodata: triggers the plan's warnings."""
    import numpy as np
    from osgeo import gdal, osr

    src = gdal.Open(os.path.join(tiles_dir, "tile_7_1_1.tif"))
    gt = src.GetGeoTransform()
    cx = gt[0] + gt[1] * src.RasterXSize / 2
    cy = gt[3] + gt[5] * src.RasterYSize / 2
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromEPSG(32633)
    b.ImportFromEPSG(32634)
    for srs in (a, b):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    x, y = osr.CoordinateTransformation(a, b).TransformPoint(cx, cy)[:2]
    size, res = 240, 15.0
    rng = np.random.default_rng(34)
    from synth import smooth_field
    data = np.stack([smooth_field(rng, size, size, 30, 230, "uint8", 0.02) for _ in range(3)])
    write_raster(os.path.join(plan_dir, "zone34_15m.tif"), data,
                 (round(x - size * res / 2), res, 0, round(y + size * res / 2), 0, -res),
                 epsg=32634, nodata=None)
    src = None


def shrink_png(path, photo=False, limit=280 * 1024):
    """Keep README pictures small.

    Screenshots: re-saved as 256-colour PNGs when smaller (text and flat widgets look
    the same). ``photo``: kept lossless when under ``limit``, else a 256-colour PNG
    with Floyd-Steinberg dithering (plain quantisation posterises smooth images).
    """
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    tmp = path + ".tmp.png"
    rgb.save(tmp, optimize=True)
    if not photo or os.path.getsize(tmp) > limit:
        palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
        dither = Image.Dither.FLOYDSTEINBERG if photo else Image.Dither.NONE
        rgb.quantize(palette=palette, dither=dither).save(tmp, optimize=True)
    if os.path.getsize(tmp) < os.path.getsize(path):
        os.replace(tmp, path)
    else:
        os.remove(tmp)


# ---------------------------------------------------------------- quicklook

def quicklook(build, tiles, png, timeout):
    """Mosaic the tiles with the CLI; draw the result and the input footprints."""
    pp = package_link(os.path.join(build, "pp"))
    mosaic = os.path.join(build, "quicklook_mosaic.tif")
    for path in (mosaic, mosaic + ".aux.xml"):
        if os.path.exists(path):
            os.remove(path)
    env = dict(os.environ, PYTHONPATH=pp, GDAL_PAM_ENABLED="NO")
    cmd = [PY, "-m", "streaming_mosaic", *tiles, "-o", mosaic, "--method", "feather",
           "--feather-distance", "40", "--chunk", "256", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"screenshots: the CLI mosaic failed ({proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from osgeo import gdal

    if pp not in sys.path:
        sys.path.insert(0, pp)
    from streaming_mosaic.core.options import Options
    from streaming_mosaic.core.plan import make_plan
    from streaming_mosaic.core.report import figures, footprint_rings

    gdal.UseExceptions()
    ds = gdal.Open(mosaic)
    gt = ds.GetGeoTransform()
    width, height = ds.RasterXSize, ds.RasterYSize
    scale = min(1.0, 700 / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    rgb = ds.ReadAsArray(buf_xsize=w, buf_ysize=h, band_list=[1, 2, 3],
                         resample_alg=gdal.GRIORA_Average)
    nodata = ds.GetRasterBand(1).GetNoDataValue()
    ds = None
    valid = np.ones((h, w), bool) if nodata is None else ~(rgb == nodata).all(axis=0)
    image = np.dstack([rgb.transpose(1, 2, 0).astype(np.uint8), (valid * 255).astype(np.uint8)])
    extent = (gt[0], gt[0] + gt[1] * width, gt[3] + gt[5] * height, gt[3])

    plan = make_plan(Options(inputs=list(tiles), method="feather", feather_distance=40, chunk_size=256))
    rings = footprint_rings(plan)

    fig, ax = plt.subplots(figsize=(7.2, 7.2), dpi=100)
    ax.imshow(image, extent=extent, interpolation="bilinear")
    colors = plt.get_cmap("tab10").colors
    for i, (ring, path) in enumerate(zip(rings, tiles)):
        xs, ys = zip(*ring)
        color = colors[i % len(colors)]
        ax.plot(xs, ys, color=color, lw=1.6)
        cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        ax.text(cx, cy, os.path.basename(path), color=color, ha="center", va="center",
                fontsize=9, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=color, alpha=0.85))
    ax.set_title(f"{len(tiles)} overlapping inputs -> {width} x {height} px mosaic "
                 f"(feather, {len(plan.windows)} windows of {plan.budget.chunk} px)",
                 fontsize=10)
    ax.set_xlabel(f"easting ({figures(plan)['crs']})", fontsize=9)
    ax.set_ylabel("northing", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.ticklabel_format(useOffset=False, style="plain")
    pad = 0.02 * (extent[1] - extent[0])
    ax.set_xlim(extent[0] - pad, extent[1] + pad)
    ax.set_ylim(extent[2] - pad, extent[3] + pad)
    ax.set_aspect("equal")
    ax.set_facecolor("#e8e8e8")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


# ---------------------------------------------------------------- QGIS under Xvfb

def qgis_screenshots(build, tiles, plan_inputs, out, timeout):
    """Run the QGIS desktop under Xvfb with tools/screenshot_qgis.py; return its status."""
    sandbox = os.path.join(build, "qgis")
    shutil.rmtree(sandbox, ignore_errors=True)  # a fresh throwaway profile every run
    profiles = os.path.join(sandbox, "profiles-root")
    profile = os.path.join(profiles, "profiles", "default")
    plugins = os.path.join(profile, "python", "plugins")
    runtime = os.path.join(sandbox, "xdg")
    tmp = os.path.join(sandbox, "tmp")
    work = os.path.join(sandbox, "work")
    home = os.path.join(sandbox, "home")
    mosaics = os.path.join(home, "mosaics")
    for folder in (plugins, os.path.join(profile, "QGIS"), runtime, tmp, work, mosaics):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    tiles, plan_inputs = (_in_home(paths, mosaics) for paths in (tiles, plan_inputs))
    os.symlink(ROOT, os.path.join(plugins, "streaming_mosaic"))
    with open(os.path.join(profile, "QGIS", "QGIS3.ini"), "w") as fh:
        fh.write("[PythonPlugins]\nstreaming_mosaic=true\n")
    status = os.path.join(work, "status.json")
    config = {
        "out": out, "work": work, "status": status, "tiles": tiles, "plan_inputs": plan_inputs,
        "mosaic_output": "~/mosaics/demo_mosaic.tif",
        # the few absolute paths QGIS itself prints in the log, as a user would see them
        "shown_as": [[home, "~"], [tmp, "/tmp"]],
        "plan_report": os.path.join(work, "plan_report.html"),
        "step_timeout": max(20, timeout // 3),
        "overall_timeout": max(30, timeout - 15),
    }
    config_path = os.path.join(work, "config.json")
    with open(config_path, "w") as fh:
        json.dump(config, fh, indent=1)

    for name in QGIS_OUTPUTS:
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)
    env = dict(os.environ)
    for key in ("QT_QPA_PLATFORM", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_PLUGINPATH", "DISPLAY",
                "WAYLAND_DISPLAY"):
        env.pop(key, None)
    env.update(HOME=home, XDG_RUNTIME_DIR=runtime, TMPDIR=tmp, SM_SCREENSHOT_CONFIG=config_path,
               GDAL_PAM_ENABLED="NO", LANG="C.UTF-8", LC_ALL="C.UTF-8", QT_SCALE_FACTOR="1",
               PYTHONDONTWRITEBYTECODE="1")
    cmd = ["timeout", "-k", "10", str(timeout), "xvfb-run", "-a", "-s", f"-screen 0 {SCREEN}",
           "qgis.bin", "--noversioncheck", "--nologo", "--nocustomization", "--lang", "en_US",
           "--profiles-path", profiles, "--profile", "default",
           "--code", os.path.join(HERE, "screenshot_qgis.py")]
    qgis_log = os.path.join(build, "qgis.log")
    log(f"starting QGIS under Xvfb (timeout {timeout} s; log {qgis_log})")
    with open(qgis_log, "w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=work,
                              start_new_session=True)
    result = {}
    if os.path.exists(status):
        with open(status) as fh:
            result = json.load(fh)
    result["returncode"] = proc.returncode
    return result


def _in_home(paths, mosaics):
    """Link each input's folder into the throwaway home; return the paths there.

    (Absolute: the dialog's input list keeps only files that exist under their name.)
    """
    result = []
    for path in paths:
        folder = os.path.basename(os.path.dirname(path))
        link = os.path.join(mosaics, folder)
        if not os.path.lexists(link):
            os.symlink(os.path.dirname(path), link)
        result.append(os.path.join(link, os.path.basename(path)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "resources", "screenshots"))
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "screenshots"))
    parser.add_argument("--timeout", type=int, default=180,
                        help="seconds before QGIS (or the CLI) is killed")
    parser.add_argument("--no-qgis", action="store_true",
                        help="only the quicklook (no QGIS, no display needed)")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    build = os.path.abspath(args.build)
    os.makedirs(out, exist_ok=True)
    os.makedirs(build, exist_ok=True)
    started = time.monotonic()

    tiles, plan_inputs = demo_data(build)
    png = os.path.join(out, "quicklook.png")
    quicklook(build, tiles, png, args.timeout)
    shrink_png(png, photo=True)
    log(f"wrote {png} ({os.path.getsize(png) // 1024} KB)")
    failed = False
    if not args.no_qgis:
        result = qgis_screenshots(build, tiles, plan_inputs, out, args.timeout)
        rc = result["returncode"]
        for name in QGIS_OUTPUTS:
            path = os.path.join(out, name)
            if os.path.exists(path):
                shrink_png(path)
                log(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")
            else:
                log(f"MISSING {path}")
                failed = True
        for error in result.get("errors", []):
            log(f"QGIS: {error}")
            failed = True
        if rc == 124 or rc == 137:
            log(f"QGIS timed out after {args.timeout} s")
            failed = True
        elif rc not in (0, 134) and not result.get("done"):
            # QGIS may abort on exit (134) after the work is done.
            log(f"QGIS exited with status {rc} (see {os.path.join(build, 'qgis.log')})")
            failed = True
        if not result.get("done"):
            log("the QGIS script did not finish")
            failed = True
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
