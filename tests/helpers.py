"""Test helpers: real GeoTIFFs (from tools/synth.py), the CLI, reading back, GDAL references."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from osgeo import gdal

from synth import smooth_field, srs_wkt, tile_set, write_raster  # noqa: F401 (re-exported)

PYTHON = sys.executable


def read(path):
    """(array (bands, rows, cols), geotransform, nodata of band 1)."""
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    if arr.ndim == 2:
        arr = arr[None]
    return arr, ds.GetGeoTransform(), ds.GetRasterBand(1).GetNoDataValue()


def checksum(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_state(folder):
    """{name: sha256} of every file in a folder (to prove inputs are untouched)."""
    return {name: checksum(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name))}


def run_cli(*args, check=False, timeout=300, env=None):
    """Run ``python3 -m streaming_mosaic`` and return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([PYTHON, "-m", "streaming_mosaic", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"CLI failed ({proc.returncode}): {proc.stderr}")
    return proc


def _default_sigint():
    # A test run started in the background by a shell ignores SIGINT, and a child
    # inheriting that ignores Ctrl-C: give the CLI the terminal's default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args, **popen_kwargs):
    """Start ``python3 -m streaming_mosaic`` in the background (pipes for its output)."""
    return subprocess.Popen([PYTHON, "-m", "streaming_mosaic", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **popen_kwargs)


def journal(out):
    """The resume checkpoint of a local OUTPUT."""
    with open(f"{out}.partial.json", encoding="utf-8") as fh:
        return json.load(fh)


def journal_done(out):
    """Windows the checkpoint of OUTPUT says are durable (-1 while there is none)."""
    try:
        return int(journal(out)["done"])
    except (OSError, ValueError, KeyError):
        return -1


def wait_for_windows(proc, out, k, timeout=300):
    """Poll the checkpoint until ``k`` windows are durable; fail if the run ends or hangs."""
    deadline = time.monotonic() + timeout
    while journal_done(out) < k:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before window {k}: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the run hung")
        time.sleep(0.002)


def vrt_reference(paths, out, **buildvrt_options):
    """gdalbuildvrt + gdal_translate of the inputs: GDAL's own mosaic ('last' on top)."""
    vrt = str(out) + ".vrt"
    gdal.BuildVRT(vrt, [str(p) for p in paths], **buildvrt_options)
    gdal.Translate(str(out), vrt)
    os.remove(vrt)
    return str(out)


def dilate(mask, r):
    """Binary dilation of a 2-D mask by a (2r+1) x (2r+1) square."""
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def corrupt_block(path, bx, by, seed=0):
    """Overwrite the compressed bytes of one block of a tiled GeoTIFF (header intact)."""
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    offset = int(band.GetMetadataItem(f"BLOCK_OFFSET_{bx}_{by}", "TIFF"))
    size = int(band.GetMetadataItem(f"BLOCK_SIZE_{bx}_{by}", "TIFF"))
    ds = None
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes())


def render_pickled(blob, index):
    """Render window ``index`` of a pickled plan (run in another process)."""
    import pickle

    from streaming_mosaic.core.render import render_window
    plan = pickle.loads(blob)
    window = plan.windows[index]
    array, _moved = render_window(plan, window)
    return window.bounds, array


def cli_peak_mb(*args, timeout=600):
    """Run the CLI with ``args`` under ``/usr/bin/time``; return its peak RSS in MB."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", PYTHON, "-m", "streaming_mosaic",
                           *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return int(proc.stderr.strip().splitlines()[-1]) / 1024
