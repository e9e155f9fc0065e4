"""Damaged inputs for tests/unit/test_fuzz_inputs.py, and the batch runner it starts.

:func:`make_cases` writes deterministic variants of real inputs (tiled LZW
GeoTIFFs, a VRT, a PNG and a JPEG): truncations, bit flips in the header and in
the data, overwritten bytes. ``python3 fuzz_inputs.py MANIFEST RESULTS`` runs the
real CLI entry point (``streaming_mosaic.cli.main``) on every case of a manifest
in this one process, with stderr (file descriptor 2) sent to a file per case, and
writes one JSON line per case: exit status, stderr, the files left in the output
folder, and whether a successful output holds what GDAL itself reads from the
input. It prints ``START name`` before each case, so a crash (signal) or a hang
(faulthandler ends the process after HANG_SECONDS) names the case.
"""

import faulthandler
import json
import os
import shutil
import sys
import traceback

import numpy as np
from osgeo import gdal

from synth import smooth_field, write_raster

HANG_SECONDS = 60
GT = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
TIFFS = {  # name: (dtype, bands, nodata, creation options)
    "lzw_u8": ("uint8", 1, 0, ["TILED=YES", "COMPRESS=LZW", "BLOCKXSIZE=128", "BLOCKYSIZE=128"]),
    "lzw_u16x3": ("uint16", 3, 0, ["TILED=YES", "COMPRESS=LZW", "PREDICTOR=2",
                                   "BLOCKXSIZE=128", "BLOCKYSIZE=128"]),
    "lzw_f32": ("float32", 1, -9999, ["TILED=YES", "COMPRESS=LZW", "PREDICTOR=3",
                                      "BLOCKXSIZE=256", "BLOCKYSIZE=256"]),
}


def _bases(folder, rng):
    """Write the clean inputs; return {name: path}."""
    bases = {}
    for name, (dtype, bands, nodata, options) in TIFFS.items():
        data = np.stack([smooth_field(rng, 300, 400, 1, 250, dtype) for _ in range(bands)])
        data[:, :4, :] = nodata
        bases[name] = write_raster(os.path.join(folder, f"{name}.tif"), data, GT, 32633,
                                   nodata, options)
    # A VRT of two overlapping clean tiles, a PNG and a JPEG georeferenced by .aux.xml.
    tiles = []
    for i in range(2):
        data = smooth_field(rng, 200, 200, 1, 250, "uint8")
        gt = (GT[0] + i * 1500.0,) + GT[1:]
        tiles.append(write_raster(os.path.join(folder, f"vrt_tile{i}.tif"), data, gt, 32633, 0))
    bases["vrt"] = os.path.join(folder, "mosaic.vrt")
    gdal.BuildVRT(bases["vrt"], tiles).FlushCache()
    rgb = np.stack([smooth_field(rng, 240, 320, 1, 250, "uint8") for _ in range(3)])
    mem = os.path.join(folder, "rgb_src.tif")
    write_raster(mem, rgb, GT, 32633, None, ["TILED=NO"])
    for ext, driver in (("png", "PNG"), ("jpg", "JPEG")):
        bases[ext] = os.path.join(folder, f"image.{ext}")
        gdal.Translate(bases[ext], mem, format=driver)
    return bases


def _header_end(path):
    """Where a TIFF's first data block starts (its header, IFD and tags lie before)."""
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    nx, ny = band.GetBlockSize()
    offsets = [int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF"))
               for y in range(-(-ds.RasterYSize // ny)) for x in range(-(-ds.RasterXSize // nx))]
    return min(offsets)


def _mutate(data, kind, rng, header_end):
    """One deterministic damage of ``data`` (bytes)."""
    out = bytearray(data)
    n = len(out)
    if kind == "truncate":
        return bytes(out[:int(rng.integers(1, n))])
    if kind == "truncate_header":
        return bytes(out[:int(rng.integers(1, max(2, header_end)))])
    lo, hi = (0, header_end) if kind in ("flip_header", "byte_header") else (header_end, n)
    for _ in range(int(rng.integers(1, 9))):
        at = int(rng.integers(lo, max(lo + 1, hi)))
        if kind.startswith("byte"):
            out[at] = int(rng.integers(0, 256))
        else:
            out[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def make_cases(folder, per_tiff=110, per_other=24, seed=20240610):
    """Write damaged variants of every base input; return the list of cases (dicts).

    Each case: name, input path, the CLI arguments, the output path and the file
    names a one-line error may name (the input, or a VRT's damaged source).
    """
    rng = np.random.default_rng(seed)
    src = os.path.join(folder, "clean")
    os.makedirs(src)
    bases = _bases(src, rng)
    cases = []
    kinds = ("truncate", "truncate_header", "flip_header", "flip_data", "byte_header",
             "byte_data")
    for name, path in bases.items():
        data = open(path, "rb").read()
        ext = os.path.splitext(path)[1]
        if name == "vrt":  # sources by absolute path, reachable from the variants' folder
            data = data.replace(b'relativeToVRT="1">', f'relativeToVRT="0">{src}/'.encode())
        header_end = _header_end(path) if ext == ".tif" else min(len(data) // 8, 1024)
        count = per_tiff if ext == ".tif" else per_other
        for i in range(count):
            kind = kinds[i % len(kinds)]
            case = f"{name}_{i:03d}_{kind}"
            target = os.path.join(folder, "in", case + ext)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            names = [os.path.basename(target)]
            if name == "vrt" and i % 2:
                # the VRT intact, one of its tiles damaged: the error may name the tile
                tile = os.path.join(src, "vrt_tile1.tif")
                bad = os.path.join(folder, "in", case + "_tile1.tif")
                with open(bad, "wb") as fh:
                    fh.write(_mutate(open(tile, "rb").read(), kind, rng, _header_end(tile)))
                data_v = data.replace(tile.encode(), bad.encode())
                names.append(os.path.basename(bad))
            else:
                data_v = _mutate(data, kind, rng, header_end)
            with open(target, "wb") as fh:
                fh.write(data_v)
            if ext in (".png", ".jpg"):
                shutil.copy(path + ".aux.xml", target + ".aux.xml")
            out = os.path.join(folder, "out", case, "mosaic.tif")
            args = [target, "-o", out, "--quiet", "--chunk", "128"]
            if i % 5 == 4:
                args += ["--threads", "1"]
            cases.append({"name": case, "base": name, "kind": kind, "input": target,
                          "args": args, "output": out, "names": names})
    return cases


# ---------------------------------------------------------------- the batch runner

def _same_as_gdal(case):
    """'' when the mosaic of one input holds what GDAL reads from it, else why not."""
    # Strict, as a careful user would read it: libjpeg's "premature end of JPEG file"
    # is otherwise a warning, and the missing part comes back grey.
    gdal.SetConfigOption("GDAL_ERROR_ON_LIBJPEG_WARNING", "YES")
    try:
        want = gdal.Open(case["input"]).ReadAsArray()
    except RuntimeError as exc:
        return f"exit 0, but GDAL cannot read the input: {exc}"
    finally:
        gdal.SetConfigOption("GDAL_ERROR_ON_LIBJPEG_WARNING", None)
    got = gdal.Open(case["output"]).ReadAsArray()
    if got.shape != want.shape:
        return f"output shape {got.shape}, input {want.shape}"
    if not np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
        return f"{int(np.sum(got != want))} pixels differ from GDAL's read of the input"
    return ""


def _run_one(case, main):
    os.makedirs(os.path.dirname(case["output"]), exist_ok=True)
    err_path = case["output"] + ".stderr"
    saved = os.dup(2)
    with open(err_path, "w") as err:
        os.dup2(err.fileno(), 2)
    try:
        status = main(case["args"])
    except BaseException:  # a bug: the real CLI would exit 1 with a traceback
        status = "traceback"
        with open(err_path, "a") as fh:
            fh.write(traceback.format_exc())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    with open(err_path) as fh:
        stderr = fh.read()
    os.remove(err_path)
    folder = os.path.dirname(case["output"])
    problem = _same_as_gdal(case) if status == 0 else ""
    return {"name": case["name"], "status": status, "stderr": stderr,
            "left": sorted(os.listdir(folder)), "problem": problem}


def run_batch(manifest, results):
    gdal.UseExceptions()
    from streaming_mosaic.cli import main
    with open(manifest) as fh:
        cases = json.load(fh)
    with open(results, "w") as out:
        for case in cases:
            print("START", case["name"], flush=True)
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
            result = _run_one(case, main)
            faulthandler.cancel_dump_traceback_later()
            out.write(json.dumps(result) + "\n")
            out.flush()
            shutil.rmtree(os.path.dirname(case["output"]), ignore_errors=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    run_batch(sys.argv[1], sys.argv[2])
