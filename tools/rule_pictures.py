"""Pictures of the compositing rules for the README, made by the project's own core.

Builds a small demo tile set (four overlapping single-band tiles of different
brightness, with nodata holes), mosaics it once per METHOD through
``streaming_mosaic.core.engine.run`` and renders:

    resources/rules/<rule>.png   one 240x240 px picture per rule
    resources/rules/inputs.png   the tiles' outlines, in stacking order
    resources/rules/all.png      every picture with its title

Nodata (no valid input) shows as a checkerboard. Deterministic (seeded data, no
timestamps in the PNGs) and takes a few seconds. Run from anywhere:

    /usr/bin/python3 tools/rule_pictures.py [--out resources/rules]
"""

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from synth import smooth_field, write_raster  # noqa: E402

SIZE = 200            # output grid side (pixels)
FEATHER = 16          # FEATHER_DISTANCE of the feather picture
# Tiles in stacking order: (x, y, side, brightness, label)
TILES = [(0, 0, 120, 60, "1 dark"), (80, 0, 120, 205, "2 bright"),
         (0, 80, 120, 140, "3 mid"), (50, 50, 100, 100, "4 striped")]
LABEL_AT = [(4, 12), (126, 12), (4, 194), (56, 104)]  # label positions in the inputs panel
TITLES = {"inputs": "inputs (stacking order)", "last": "last (later on top)",
          "first": "first (earlier on top)", "min": "min", "max": "max", "mean": "mean",
          "sum": "sum", "count": "count (valid inputs)", "feather": f"feather ({FEATHER} px)",
          "median": "median", "percentile": "percentile (50)", "mode": "mode"}
NO_META = {"Software": None}  # keeps the PNGs byte-identical from run to run


def import_core():
    """Import streaming_mosaic whatever the checkout folder is called."""
    try:
        import streaming_mosaic  # noqa: F401
    except ImportError:
        parent = tempfile.mkdtemp(prefix="sm-pkg-")
        os.symlink(ROOT, os.path.join(parent, "streaming_mosaic"))
        sys.path.insert(0, parent)
    from streaming_mosaic.core.engine import run
    from streaming_mosaic.core.options import METHODS, Options
    return run, METHODS, Options


def make_tiles(folder):
    """Write the demo tiles (uint16 so sums do not saturate, nodata 0); return their paths."""
    rng = np.random.default_rng(42)
    paths = []
    for i, (x, y, side, level, _label) in enumerate(TILES):
        data = smooth_field(rng, side, side, level - 28, level + 28, "uint16", noise=0.0)
        if i == 3:  # stripes, so this tile is recognisable under the others
            stripes = (np.arange(side) // 8 % 2 == 0)[None, :]
            data = np.where(stripes, data, data // 2 + 20).astype(np.uint16)
        if i == 1:
            data[60:85, 75:105] = 0     # a hole only tile 2 covers: stays nodata
        if i == 3:
            data[15:40, 15:45] = 0      # a hole over the others: they show through
        paths.append(write_raster(os.path.join(folder, f"tile{i + 1}.tif"), data,
                                  (500000.0 + x * 10.0, 10.0, 0, 5000000.0 - y * 10.0, 0, -10.0),
                                  nodata=0))
    return paths


def mosaic(paths, folder):
    """{rule: (array, nodata)} for every METHOD, through the core engine."""
    from osgeo import gdal
    run, methods, Options = import_core()
    results = {}
    for rule in methods:
        out = os.path.join(folder, f"{rule}.tif")
        run(Options(inputs=paths, output=out, method=rule, feather_distance=FEATHER,
                    chunk_size=64, threads=1))
        ds = gdal.Open(out)
        band = ds.GetRasterBand(1)
        results[rule] = (band.ReadAsArray(), band.GetNoDataValue())
        ds = None
    return results


def checkerboard(ax, cell=10):
    """Pink and white squares where the mosaic is nodata."""
    board = (np.add.outer(np.arange(SIZE) // cell, np.arange(SIZE) // cell) % 2).astype(bool)
    colors = np.where(board[:, :, None], [1.0, 1.0, 1.0], [0.96, 0.78, 0.84])
    ax.imshow(colors, interpolation="nearest")


def draw(ax, rule, results):
    """One panel: the rule's mosaic (or the inputs' outlines) on a checkerboard."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    ax.set_axis_off()
    ax.set_xlim(-0.5, SIZE - 0.5)
    ax.set_ylim(SIZE - 0.5, -0.5)
    checkerboard(ax)
    if rule == "inputs":
        colors = plt.get_cmap("tab10").colors
        for i, (x, y, side, level, label) in enumerate(TILES):
            grey = level / 255.0
            ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), side, side, facecolor=(grey,) * 3,
                                       alpha=0.7, edgecolor=colors[i], linewidth=2.5))
            ax.text(*LABEL_AT[i], label, color=colors[i], fontsize=9, fontweight="bold",
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")])
        return None
    data, nodata = results[rule]
    hole = (data == nodata) if nodata is not None else np.zeros(data.shape, bool)
    if rule == "count":
        hole = data == 0
        top = max(int(data.max()), 1)
        cmap = mcolors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 1, top)))
        image = ax.imshow(np.ma.masked_array(data, hole), cmap=cmap, vmin=0.5, vmax=top + 0.5,
                          interpolation="nearest")
        return image
    vmax = max(int(data.max()), 1) if rule == "sum" else 255
    ax.imshow(np.ma.masked_array(data, hole), cmap="gray", vmin=0, vmax=vmax,
              interpolation="nearest")
    return None


def save_single(rule, results, path):
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(2.4, 2.4), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    image = draw(ax, rule, results)
    if image is not None:  # count: a small legend of the levels
        cax = fig.add_axes([0.82, 0.03, 0.05, 0.2])  # in the empty corner
        bar = fig.colorbar(image, cax=cax, ticks=range(1, int(image.norm.vmax) + 1))
        bar.ax.tick_params(labelsize=8, length=0)
    fig.savefig(path, dpi=100, metadata=NO_META)
    plt.close(fig)
    shrink(path)


def save_all(rules, results, path):
    import matplotlib.pyplot as plt
    cols = 5
    rows = -(-len(rules) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.0), dpi=100)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, rule in zip(axes.flat, rules):
        draw(ax, rule, results)
        ax.set_title(TITLES[rule], fontsize=9)
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=100, metadata=NO_META)
    plt.close(fig)
    shrink(path)


def shrink(path, colors=255):
    """Re-save as a palette PNG: a few times smaller, and still deterministic."""
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT, dither=0)
    small.save(path, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "resources", "rules"),
                        help="output folder (default: resources/rules of this checkout)")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "rules"
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sm-rules-")
    try:
        results = mosaic(make_tiles(work), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _run, methods, _options = import_core()
    rules = ["inputs"] + list(methods)
    for rule in rules:
        save_single(rule, results, os.path.join(args.out, f"{rule}.png"))
    save_all(rules, results, os.path.join(args.out, "all.png"))
    for rule in rules + ["all"]:
        path = os.path.join(args.out, f"{rule}.png")
        print(f"{path} ({os.path.getsize(path) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
