"""Every bad input makes the CLI exit 2 with one line naming the file or option,
leaving no output and the inputs untouched."""

import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from osgeo import gdal

from helpers import PYTHON, corrupt_block, folder_state, run_cli, tile_set, write_raster
from streaming_mosaic.core import engine
from streaming_mosaic.core.errors import InputError
from streaming_mosaic.core.options import Options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if ".partial" in n)


def block_is_unreadable(path, bx, by):
    ds = gdal.Open(path)
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return ds.GetRasterBand(1).ReadAsArray(bx * 256, by * 256, 256, 256) is None
    except RuntimeError:
        return True
    finally:
        gdal.PopErrorHandler()


# Each case gets the input folder (four good 700 x 600 tiles in it), their paths
# and the output path; it returns the CLI arguments and the text the error line
# must contain (the file or the option at fault).

def _missing(folder, paths, out):
    return paths + [os.path.join(folder, "missing.tif"), "-o", out], "missing.tif"


def _text_file(folder, paths, out):
    path = os.path.join(folder, "notes.tif")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("this is not a raster\n" * 50)
    return paths + [path, "-o", out], "notes.tif"


def _truncated(folder, paths, out):
    path = os.path.join(folder, "cut.tif")
    shutil.copy(paths[0], path)
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    return paths + [path, "-o", out], "cut.tif"


def _corrupt_tile(folder, paths, out):
    # block 1,1 of the last tile is first read by window row 3 of 5
    corrupt_block(paths[-1], 1, 1, seed=3)
    assert block_is_unreadable(paths[-1], 1, 1)
    return paths + ["-o", out], os.path.basename(paths[-1])


def _band_counts(folder, paths, out):
    path = os.path.join(folder, "two_bands.tif")
    rng = np.random.default_rng(1)
    write_raster(path, rng.integers(1, 250, (2, 80, 90), dtype=np.uint8),
                 (500300.0, 10.0, 0, 4999700.0, 0, -10.0), nodata=0)
    return paths + [path, "-o", out], "two_bands.tif"


def _no_crs(folder, paths, out):
    path = os.path.join(folder, "no_crs.tif")
    rng = np.random.default_rng(2)
    write_raster(path, rng.integers(1, 250, (80, 90), dtype=np.uint8),
                 (500300.0, 10.0, 0, 4999700.0, 0, -10.0), epsg=None, nodata=0)
    return paths + [path, "-o", out], "no_crs.tif"


def _option(*args, name):
    return lambda folder, paths, out: (paths + ["-o", out, *args], name)


CASES = {
    "missing input": _missing,
    "text file": _text_file,
    "truncated GeoTIFF": _truncated,
    "corrupt tile found mid-run": _corrupt_tile,
    "no inputs": lambda folder, paths, out: (["-o", out], "INPUT"),
    "different band counts": _band_counts,
    "input without CRS": _no_crs,
    "OUTPUT is an input": lambda folder, paths, out: (paths + ["-o", paths[1]], "OUTPUT"),
    "output folder missing": lambda folder, paths, out: (
        paths + ["-o", os.path.join(os.path.dirname(out), "nope", "mosaic.tif")], "nope"),
    "OUTPUT not a .tif": lambda folder, paths, out: (
        paths + ["-o", out[:-4] + ".png"], "OUTPUT"),
    "CHUNK_SIZE -1": _option("--chunk", "-1", name="--chunk"),
    "MEMORY_MB 0": _option("--memory-mb", "0", name="--memory-mb"),
    "MEMORY_MB abc": _option("--memory-mb", "abc", name="--memory-mb"),
    "THREADS -2": _option("--threads", "-2", name="--threads"),
    "BANDS a,b": _option("--bands", "a,b", name="--bands"),
    "BANDS 0": _option("--bands", "0", name="--bands"),
    "NODATA_OUTPUT 300 for uint8": _option("--nodata-output", "300", name="--nodata-output"),
    "EXTENT 1,2,3": _option("--extent", "1,2,3", name="--extent"),
    "EXTENT far away": _option("--extent", "0,0,1000,1000", name="--extent"),
    "unknown METHOD": _option("--method", "medoid", name="--method"),
}


# Found while reading a window, after others were written: those are kept for RESUME.
MID_RUN = {"truncated GeoTIFF", "corrupt tile found mid-run"}
KEPT = ["mosaic.tif.partial", "mosaic.tif.partial.json"]


@pytest.fixture
def good(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = tile_set(folder, seed=4, grid=(2, 2), size=(700, 600), overlap=50)
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    return str(folder), paths, str(out)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(good, case):
    folder, paths, out = good
    args, name = CASES[case](folder, list(paths), out)
    before = folder_state(folder)

    res = run_cli("--chunk", "256", "--threads", "2", "--quiet", *args)  # the case may override

    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert line.startswith("streaming_mosaic: error: ")
    assert name in line
    assert folder_state(folder) == before
    if case in MID_RUN:  # no OUTPUT; the windows written before are kept, and it says so
        assert "kept" in line and "RESUME" in line
        assert sorted(os.listdir(os.path.dirname(out))) == KEPT
    else:
        assert os.listdir(os.path.dirname(out)) == []  # no OUTPUT, no OUTPUT.partial*
    assert leftovers(folder) == []


def test_corrupt_tile_fails_only_after_windows_were_written_and_keeps_them(good):
    folder, paths, out = good
    corrupt_block(paths[-1], 1, 1, seed=3)
    before = folder_state(folder)
    written = []
    with pytest.raises(InputError) as info:
        engine.run(Options(inputs=paths, output=out, chunk_size=256, threads=2,
                           checkpoint_seconds=0.0),
                   progress=lambda event: written.append(event.text))
    assert os.path.basename(paths[-1]) in str(info.value)
    assert len(written) >= 12  # met at window row 3 of 5, not when the file was opened
    assert sorted(os.listdir(os.path.dirname(out))) == KEPT
    assert folder_state(folder) == before


@pytest.fixture
def unprivileged():
    """Run a command as nobody (tests run as root, for whom permissions do not apply)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_output_folder_not_writable_is_refused_before_reading_anything(unprivileged):
    # /tmp, not $TMPDIR or the checkout: nobody may not be able to enter those (a clone
    # under /root), so the package is copied to where nobody can read it.
    base = tempfile.mkdtemp(prefix="sm-perm-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        shutil.copytree(ROOT, os.path.join(base, "streaming_mosaic"), ignore=shutil.ignore_patterns(
            ".git", "build", "tests", "bench", "resources", "__pycache__", "*.zip"))
        inputs = os.path.join(base, "in")
        os.mkdir(inputs)
        paths = tile_set(inputs, seed=6, grid=(1, 2), size=(300, 260), overlap=20)
        for p in paths:
            os.chmod(p, 0o644)
        os.chmod(inputs, 0o755)
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o555)
        os.chmod(locked, 0o555)
        before = folder_state(inputs)
        env = dict(os.environ, PYTHONPATH=base, PYTHONDONTWRITEBYTECODE="1", HOME=base)
        res = subprocess.run(unprivileged + [PYTHON, "-m", "streaming_mosaic", *paths, "-o",
                                             os.path.join(locked, "mosaic.tif"), "--quiet"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=base)
        assert res.returncode == 2, res.stderr
        line = one_line(res.stderr)
        assert "locked" in line and "not writable" in line
        assert os.listdir(locked) == []
        assert folder_state(inputs) == before
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("case", ["corrupt tile found mid-run", "BANDS 0", "input without CRS"])
def test_a_failed_run_leaves_an_existing_output_untouched(good, case):
    folder, paths, out = good
    run_cli(*paths[:2], "-o", out, "--quiet", check=True)  # yesterday's mosaic
    old = folder_state(os.path.dirname(out))
    args, name = CASES[case](folder, list(paths), out)
    res = run_cli("--chunk", "256", "--quiet", *args)
    assert res.returncode == 2, res.stderr
    assert name in one_line(res.stderr)
    now = folder_state(os.path.dirname(out))
    assert sorted(now) == sorted(old) + (KEPT if case in MID_RUN else [])
    assert {n: now[n] for n in old} == old
