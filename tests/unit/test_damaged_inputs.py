"""Damaged inputs: the CLI exits 0 or 2, with one line naming the file, and leaves nothing at OUTPUT.

Two targeted damages first (a GeoTIFF nodata tag or GeoKey GDAL cannot read: GDAL
only warns, or fails only in its exception mode, and carries on without them), then
a fuzz test.

Several hundred deterministic variants (tests/fuzz_inputs.py) of tiled LZW
GeoTIFFs, a VRT, a PNG and a JPEG (truncated, bits flipped in the header and in
the data) run through the CLI's own ``main`` in one subprocess; a sample of them
also through ``python3 -m streaming_mosaic``, whose exit statuses and messages must
be the same. A successful run must hold exactly what GDAL reads from the input.
"""

import collections
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import fuzz_inputs
from helpers import PYTHON, run_cli, smooth_field, write_raster


def _patch_ifd(src, dst, tag, patch):
    """Copy a little-endian classic GeoTIFF, letting ``patch(data, entry, value)`` change
    the IFD entry of ``tag`` (entry: its offset in the file; value: its 4-byte field)."""
    data = bytearray(open(src, "rb").read())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == tag:
            patch(data, entry, struct.unpack_from("<I", data, entry + 8)[0])
    with open(dst, "wb") as fh:
        fh.write(data)
    return str(dst)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A clean tile, one whose nodata tag has a wrong type, one with a GeoKey of no type."""
    folder = tmp_path_factory.mktemp("damaged")
    data = smooth_field(np.random.default_rng(5), 120, 160, 1, 250, "uint8")
    data[:10] = 0  # nodata collar: with the nodata tag lost, these zeros become data
    clean = write_raster(folder / "clean.tif", data, fuzz_inputs.GT, 32633, 0)
    nodata = _patch_ifd(clean, folder / "nodata_tag.tif", 42113,  # GDALNoDataValue
                        lambda d, e, v: struct.pack_into("<HI", d, e + 2, 12, 2))  # 2 DOUBLE
    geokey = _patch_ifd(clean, folder / "geokey.tif", 34735,  # GeoKeyDirectory
                        lambda d, e, v: struct.pack_into("<H", d, v + 10, 12345))  # key 1 location
    return clean, nodata, geokey


@pytest.mark.parametrize("which,words", [(1, ["GDALNoDataValue", "ignored"]),
                                         (2, ["Key", "unknown type"])])
def test_a_geotiff_whose_nodata_or_geokeys_cannot_be_read_is_refused(damaged, tmp_path,
                                                                     which, words):
    path = damaged[which]
    out = tmp_path / "out.tif"
    proc = run_cli(path, "-o", out)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and path in lines[0] and "damaged" in lines[0], proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert os.listdir(tmp_path) == []
    assert run_cli(damaged[0], "-o", out).returncode == 0  # the clean file runs


def test_damaged_headers_are_refused_without_gdal_exceptions_too(damaged):
    """QGIS runs the core with GDAL's exceptions off: there GDAL only reports the damage."""
    code = ("import sys\n"
            "from osgeo import gdal\n"
            "gdal.DontUseExceptions()\n"
            "from streaming_mosaic.core.errors import InputError\n"
            "from streaming_mosaic.core.sources import describe\n"
            "describe(0, sys.argv[1])\n"
            "for path in sys.argv[2:]:\n"
            "    try:\n"
            "        describe(0, path)\n"
            "        print('accepted', path)\n"
            "    except InputError as exc:\n"
            "        print('refused', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, *damaged], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["refused", "refused"], lines
    assert damaged[1] in lines[0] and damaged[2] in lines[1]


def _problems(case, result):
    """What is wrong with one case's outcome (empty when nothing)."""
    status, stderr, left = result["status"], result["stderr"], result["left"]
    lines = [line for line in stderr.strip().splitlines() if line]
    if status not in (0, 2):
        return [f"exit {status}: {lines[-1] if lines else ''}"]
    problems = []
    if status == 0:
        if left != ["mosaic.tif"]:
            problems.append(f"exit 0 but the output folder holds {left}")
        if any(not line.startswith("warning: ") for line in lines):
            problems.append(f"exit 0 with messages: {lines}")
        if result["problem"]:
            problems.append(result["problem"])
        return problems
    # One error line, last; warnings the plan printed before it (e.g. a header flip that
    # made a huge pixel type too big for the memory budget) may precede it.
    errors = [line for line in lines if not line.startswith("warning: ")]
    if len(errors) != 1 or errors[0] != lines[-1] or "Traceback" in stderr:
        return [f"exit 2 with {len(errors)} error lines: {stderr.strip()[-600:]}"]
    line = errors[0]
    if not line.startswith("streaming_mosaic: error: "):
        problems.append(f"not an error line: {line}")
    if not any(name in line for name in case["names"]):
        problems.append(f"the line names neither of {case['names']}: {line}")
    if "mosaic.tif" in left:
        problems.append(f"exit 2 but OUTPUT exists: {line}")
    if "mosaic.tif.partial" in left:
        if "partial" not in line:
            problems.append(f"a partial output was kept without saying so: {line}")
    elif left:
        problems.append(f"exit 2 left {left} behind: {line}")
    return problems


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("fuzz"))
    cases = fuzz_inputs.make_cases(folder)
    manifest = os.path.join(folder, "cases.json")
    results = os.path.join(folder, "results.jsonl")
    with open(manifest, "w") as fh:
        json.dump(cases, fh)
    env = {k: v for k, v in os.environ.items() if k != "CPL_DEBUG"}
    proc = subprocess.run([PYTHON, fuzz_inputs.__file__, manifest, results],
                          capture_output=True, text=True, env=env, timeout=900)
    started = [line[6:] for line in proc.stdout.splitlines() if line.startswith("START ")]
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("DONE"), (
        f"the batch ended with status {proc.returncode} (negative: a signal) at case "
        f"{started[-1] if started else None}: {proc.stderr[-2000:]}")
    with open(results) as fh:
        outcome = {r["name"]: r for r in map(json.loads, fh)}
    return cases, outcome


def test_every_damaged_input_exits_0_or_2_with_one_line_and_nothing_at_output(fuzzed):
    cases, outcome = fuzzed
    assert sum(c["input"].endswith(".tif") for c in cases) >= 300
    assert {os.path.splitext(c["input"])[1] for c in cases} == {".tif", ".vrt", ".png", ".jpg"}
    assert len(outcome) == len(cases)
    failures = [f"{c['name']}: {p}" for c in cases for p in _problems(c, outcome[c["name"]])]
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:40])
    # The damage is real: every kind of input has refused variants, and a flipped bit in
    # a GeoTIFF's data often still decodes (those runs must then match GDAL's read).
    statuses = collections.defaultdict(set)
    for c in cases:
        statuses[c["base"]].add(outcome[c["name"]]["status"])
    assert all(2 in s for s in statuses.values()), dict(statuses)
    assert all(statuses[name] == {0, 2} for name in fuzz_inputs.TIFFS), dict(statuses)


def _same_place(text):
    """GDAL 3.13's libtiff quotes the failing row and column as its reader happened to
    reach it (``row 384, col 128`` or ``row 4294967295, ...``): not ours to compare."""
    return re.sub(r"at row \d+, col \d+", "at row R, col C", text)


def test_the_real_command_line_gives_the_same_exit_statuses_and_lines(fuzzed):
    cases, outcome = fuzzed
    sample = {}
    for c in cases:  # the first refused and the first accepted variant of each input
        key = (c["base"], outcome[c["name"]]["status"])
        sample.setdefault(key, c)
    assert len(sample) >= 8
    for case in sample.values():
        want = outcome[case["name"]]
        os.makedirs(os.path.dirname(case["output"]))  # the batch removed it
        proc = run_cli(*case["args"], timeout=120)
        assert proc.returncode == want["status"], (case["name"], proc.stderr)
        assert _same_place(proc.stderr) == _same_place(want["stderr"]), case["name"]
        assert os.path.exists(case["output"]) == (want["status"] == 0)


@pytest.mark.parametrize("extra", [[], ["--pixel-size", "7"]], ids=["direct", "vrt"])
def test_a_crs_name_in_latin1_is_read_not_a_traceback(tmp_path, extra):
    """Old tools wrote CRS names in Latin-1: GDAL's bindings then hand back bytes."""
    from osgeo import gdal, osr
    srs = osr.SpatialReference()
    srs.ImportFromProj4("+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 "
                        "+ellps=GRS80 +units=m +no_defs")
    srs.SetProjCS("Reseau local")
    path = str(tmp_path / "latin1.tif")
    data = smooth_field(np.random.default_rng(8), 90, 120, 1, 250, "uint8")
    ds = gdal.GetDriverByName("GTiff").Create(path, 120, 90, 1, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=LZW"])
    ds.SetGeoTransform(fuzz_inputs.GT)
    ds.SetSpatialRef(srs)
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
    raw = open(path, "rb").read()
    assert raw.count(b"Reseau local") == 1
    with open(path, "wb") as fh:  # "Réseau local", é as the Latin-1 byte 0xE9
        fh.write(raw.replace(b"Reseau local", b"R\xe9seau local"))
    out = tmp_path / "out.tif"
    proc = run_cli(path, "-o", out, "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    got = gdal.Open(str(out))
    assert got.GetSpatialRef().IsSame(gdal.Open(path).GetSpatialRef())
    if not extra:
        np.testing.assert_array_equal(got.ReadAsArray(), data)
    else:  # resampled to 7 m through the VRT path: as gdalbuildvrt -tr 7 7
        vrt = gdal.BuildVRT("", [path], xRes=7, yRes=7)
        want = gdal.Translate("", vrt, format="MEM").ReadAsArray()
        np.testing.assert_array_equal(got.ReadAsArray(), want)
