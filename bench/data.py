"""Benchmark inputs: synthetic tile sets generated once and cached by their parameters.

Every data set lives in ``bench/out/data/<kind>-<hash of its parameters>/`` with a
``manifest.json`` written last, so an interrupted generation is redone and a
rerun with the same parameters reuses the files. Content comes from
``tools/synth.py`` (a smooth terrain-like field plus noise, seeded), so the
mosaics compress like real imagery (about 2x with LZW + PREDICTOR=2 at the
default noise); the benchmark measures and reports the actual ratio.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from osgeo import gdal, osr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from synth import smooth_field, tile_set, write_raster  # noqa: E402

OUT = os.path.join(HERE, "out")
DATA = os.path.join(OUT, "data")

# Inputs are stored as real ones usually are: LZW, tiled when large (synth's default).
LARGE_INPUT_CO = ["TILED=YES", "COMPRESS=LZW"]
SMALL_INPUT_CO = ["COMPRESS=LZW"]  # a 64 px file is one strip, not one padded 256 px tile

gdal.UseExceptions()


def _key(kind, params):
    text = json.dumps({"kind": kind, "version": 1, **params}, sort_keys=True)
    return f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _cached(kind, params, make):
    """Return the manifest of a data set, generating it with ``make(folder)`` if needed."""
    folder = os.path.join(DATA, _key(kind, params))
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as fh:
            # Where it is now: the same cache is seen at another path inside the chroots.
            return dict(json.load(fh), folder=folder)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    print(f"  generating {kind} {params} -> {folder}", flush=True)
    info = make(folder)
    info.update(kind=kind, params=params, folder=folder)
    with open(manifest + ".tmp", "w") as fh:
        json.dump(info, fh, indent=1)
    os.replace(manifest + ".tmp", manifest)
    return info


def _rel(folder, paths):
    return [os.path.relpath(p, folder) for p in paths]


def mosaic_set(grid=3, tile=1467, overlap=200, bands=3, dtype="uint16", noise=0.002, seed=7):
    """A ``grid`` x ``grid`` set of overlapping tiles with nodata collars and holes.

    The mosaic is ``grid * tile - (grid - 1) * overlap`` pixels square
    (3 x 3000 px with 200 px overlaps: the issue's 8600 x 8600 reference).
    """
    params = dict(grid=grid, tile=tile, overlap=overlap, bands=bands, dtype=dtype, noise=noise,
                  seed=seed)

    def make(folder):
        paths = tile_set(folder, seed=seed, grid=(grid, grid), size=(tile, tile),
                         overlap=overlap, bands=bands, dtype=dtype, nodata=0, holes=True,
                         collar=8, noise=noise, low=1, high=3000)
        side = grid * tile - (grid - 1) * overlap
        return {"inputs": _rel(folder, paths), "width": side, "height": side, "bands": bands,
                "dtype": dtype}

    return _cached("mosaic", params, make)


def many_set(n_small=100, small=64, n_large=4, bands=3, dtype="uint16", noise=0.002, seed=11):
    """One field cut two ways: ``n_small``^2 tiles of ``small`` px and ``n_large``^2 big tiles.

    Both sets cover exactly the same pixels (no overlaps), so their mosaics are
    identical and the time per output pixel compares directly.
    """
    params = dict(n_small=n_small, small=small, n_large=n_large, bands=bands, dtype=dtype,
                  noise=noise, seed=seed)
    side = n_small * small
    if side % n_large:
        raise ValueError("the large tiles must divide the mosaic")

    def make(folder):
        rng = np.random.default_rng(seed)
        field = np.stack([smooth_field(rng, side, side, 1, 3000, dtype, noise)
                          for _ in range(bands)])
        for _ in range(max(3, n_small * n_small // 200)):  # holes, some in one band only
            y0, x0 = rng.integers(0, side - 40, 2)
            b = rng.integers(0, bands + 1)
            sel = slice(None) if b == bands else slice(b, b + 1)
            field[sel, y0:y0 + rng.integers(5, 40), x0:x0 + rng.integers(5, 40)] = 0
        res, x_org, y_org = 10.0, 400000.0, 5200000.0
        out = {}
        for name, n, co in (("small", n_small, SMALL_INPUT_CO), ("large", n_large, LARGE_INPUT_CO)):
            sub = os.path.join(folder, name)
            os.makedirs(sub)
            t = side // n
            paths = []
            for r in range(n):
                for c in range(n):
                    path = os.path.join(sub, f"t{r:03d}_{c:03d}.tif")
                    gt = (x_org + c * t * res, res, 0, y_org - r * t * res, 0, -res)
                    write_raster(path, field[:, r * t:(r + 1) * t, c * t:(c + 1) * t], gt,
                                 32633, 0, co)
                    paths.append(path)
            out[name] = _rel(folder, paths)
        return {"small": out["small"], "large": out["large"], "width": side, "height": side,
                "bands": bands, "dtype": dtype}

    return _cached("many", params, make)


def _utm(epsg, lon, lat):
    src = osr.SpatialReference()
    src.ImportFromEPSG(4326)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(epsg)
    x, y, _ = osr.CoordinateTransformation(src, dst).TransformPoint(lon, lat)
    return x, y


def mixed_crs_set(grid=2, tile=1500, overlap=200, bands=3, dtype="uint16", noise=0.002, seed=5):
    """Two tile sets on either side of 12 deg E: UTM 32N (EPSG:32632) and 33N (EPSG:32633).

    The two blocks overlap by about 0.1 deg across the zone boundary; listed
    zone 32 first, so zone 33 is on top with METHOD=last. The target is 33N.
    """
    params = dict(grid=grid, tile=tile, overlap=overlap, bands=bands, dtype=dtype, noise=noise,
                  seed=seed)
    res = 10.0
    span = (grid * tile - (grid - 1) * overlap) * res

    def make(folder):
        lat_top = 45.5
        x33, y33 = _utm(32633, 11.95, lat_top)
        x32e, y32 = _utm(32632, 12.05, lat_top)
        snap = lambda v: round(v / res) * res  # noqa: E731
        paths = []
        for epsg, origin, seed_ in ((32632, (snap(x32e - span), snap(y32)), seed),
                                    (32633, (snap(x33), snap(y33)), seed + 1)):
            sub = os.path.join(folder, str(epsg))
            os.makedirs(sub)
            paths += tile_set(sub, seed=seed_, grid=(grid, grid), size=(tile, tile),
                              overlap=overlap, bands=bands, dtype=dtype, nodata=0, holes=True,
                              collar=8, noise=noise, low=1, high=3000, origin=origin, res=res,
                              epsg=epsg)
        return {"inputs": _rel(folder, paths), "target_crs": "EPSG:32633", "bands": bands,
                "dtype": dtype}

    return _cached("mixed", params, make)


def build_vrt(info, inputs_key="inputs", name=None):
    """gdalbuildvrt of a data set's inputs (cached next to them); returns its path.

    Paths inside the VRT are relative to the data set's folder (``-input_file_list``),
    which is where every tool runs.
    """
    folder = info["folder"]
    name = name or f"{inputs_key}.vrt"
    vrt = os.path.join(folder, name)
    if not os.path.exists(vrt):
        listing = os.path.join(folder, f"{inputs_key}.txt")
        with open(listing, "w") as fh:
            fh.write("\n".join(info[inputs_key]) + "\n")
        subprocess.run(["gdalbuildvrt", "-q", "-input_file_list", listing, vrt + ".tmp"],
                       cwd=folder, check=True)
        os.replace(vrt + ".tmp", vrt)
    return vrt


def uncompressed_mosaic(info, vrt, block=512):
    """The finished mosaic, uncompressed and tiled (input of the I/O-floor copy)."""
    out = os.path.join(info["folder"], f"mosaic-none-{block}.tif")
    if not os.path.exists(out):
        subprocess.run(["gdal_translate", "-q", "-co", "TILED=YES", "-co", f"BLOCKXSIZE={block}",
                        "-co", f"BLOCKYSIZE={block}", "-co", "COMPRESS=NONE", "-co",
                        "BIGTIFF=IF_SAFER", vrt, out + ".tmp.tif"],
                       cwd=info["folder"], check=True, env=dict(os.environ, GDAL_CACHEMAX="256"))
        os.replace(out + ".tmp.tif", out)
    return out


def raw_bytes(width, height, bands, dtype):
    return width * height * bands * np.dtype(dtype).itemsize
