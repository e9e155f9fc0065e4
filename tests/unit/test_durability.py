"""Durable work survives real-world inputs and runs: what an input really reads is part of
the checkpoint, one run at a time per OUTPUT, a read error keeps the windows already written,
and the end of a run (COG step) says what happened and leaves no stray file."""

import email.utils
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import zipfile

import numpy as np
import pytest
from osgeo import gdal

from helpers import PYTHON, corrupt_block, read, run_cli, tile_set, vrt_reference
from streaming_mosaic.core import engine, runlock
from streaming_mosaic.core.errors import Cancelled, OutputError
from streaming_mosaic.core.options import Options

GUARD_SECONDS = 120  # only to stop a hung child; nothing asserts on time
ARGS = ("--chunk", "256", "--threads", "2", "--checkpoint-seconds", "0")


# --------------------------------------------------------------------------- helpers

def options(paths, out, **kw):
    base = dict(inputs=[str(p) for p in paths], output=str(out), chunk_size=256, threads=2,
                checkpoint_seconds=0.0)
    base.update(kw)
    return Options(**base)


def interrupt(paths, out, after, **kw):
    """Run through the core API and cancel once ``after`` windows are written."""
    seen = []

    def progress(_fraction, text):
        if text.startswith("window "):
            seen.append(text)

    with pytest.raises(Cancelled):
        engine.run(options(paths, out, **kw), progress=progress,
                   cancel=lambda: len(seen) >= after)
    assert journal(out)["done"] == after


def journal(out):
    with open(f"{out}.partial.json", encoding="utf-8") as fh:
        return json.load(fh)


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if ".partial" in n)


def kept_state(out):
    folder = os.path.dirname(str(out))
    return {n: hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest()
            for n in leftovers(folder)}


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def cli(*args, cwd=None):
    return subprocess.run([PYTHON, "-m", "streaming_mosaic", *map(str, args)],
                          capture_output=True, text=True, timeout=GUARD_SECONDS, cwd=cwd)


def assert_same_raster(path, reference):
    got, want = read(path), read(reference)
    assert got[1:] == want[1:]
    assert got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(got[0], want[0])


def uncompressed_copy(src, dst):
    """A tiled, uncompressed copy: a pixel can then change without changing the size."""
    gdal.Translate(str(dst), str(src), creationOptions=["TILED=YES"])
    return str(dst)


def change_pixel(path, x=40, y=40):
    """Change one pixel in place; the file keeps its size (uncompressed) and gets a new mtime."""
    before = os.stat(path)
    ds = gdal.Open(str(path), gdal.GA_Update)
    band = ds.GetRasterBand(1)
    value = int(band.ReadAsArray(x, y, 1, 1)[0, 0])
    band.WriteArray(np.array([[value % 200 + 7]], np.uint8), x, y)
    ds = None
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.path.getsize(path) == before.st_size  # the premise: only content and mtime


@pytest.fixture
def tiles(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    return tile_set(folder, seed=5, grid=(2, 2), size=(700, 600), overlap=50), folder, out


# --------------------------------------------------------------------------- what an input reads

def _vrt(paths, folder):
    src = uncompressed_copy(paths[0], folder / "src.tif")
    vrt = str(folder / "two.vrt")
    gdal.BuildVRT(vrt, [src, paths[1]])
    return [vrt] + paths[2:], src


def _nested_vrt(paths, folder):
    src = uncompressed_copy(paths[0], folder / "src.tif")
    inner = str(folder / "inner.vrt")
    gdal.BuildVRT(inner, [src])
    outer = str(folder / "outer.vrt")
    gdal.BuildVRT(outer, [inner, paths[1]])
    return [outer] + paths[2:], src


def _netcdf(paths, folder):
    # relative, as a user types it: NETCDF:"tile.nc":Band1 (the runs use cwd=folder)
    gdal.Translate(str(folder / "tile.nc"), paths[0], format="netCDF")
    return ['NETCDF:"tile.nc":Band1'] + paths[1:], str(folder / "tile.nc")


def _write_zip(folder, member):
    archive = os.path.join(str(folder), "tiles.zip")
    info = zipfile.ZipInfo("tile.tif", date_time=(2024, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf, open(member, "rb") as fh:
        zf.writestr(info, fh.read())
    return archive


def _vsizip(paths, folder):
    member = uncompressed_copy(paths[0], folder / "member.tif")
    archive = _write_zip(folder, member)
    return [f"/vsizip/{archive}/tile.tif"] + paths[1:], archive


def _change_netcdf(nc):
    path = nc.replace(".nc", "_changed.tif")
    gdal.Translate(path, nc)
    change_pixel(path)
    before = os.stat(nc)
    gdal.Translate(nc, path, format="netCDF")
    os.utime(nc, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))


def _change_zip(archive):
    folder = os.path.dirname(archive)
    member = os.path.join(folder, "member.tif")
    change_pixel(member)
    before = os.stat(archive)
    _write_zip(folder, member)
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    inner = gdal.VSIStatL(f"/vsizip/{archive}/tile.tif")
    assert os.path.getsize(archive) == before.st_size and inner is not None


READS = {
    "VRT source": (_vrt, change_pixel),
    "source of a nested VRT": (_nested_vrt, change_pixel),
    "NetCDF subdataset container": (_netcdf, _change_netcdf),
    "/vsizip/ member": (_vsizip, _change_zip),
}


@pytest.mark.parametrize("case", list(READS))
def test_resume_refuses_when_a_file_an_input_reads_changed(tiles, monkeypatch, case):
    paths, folder, out = tiles
    make, change = READS[case]
    inputs, changed = make(paths, folder)
    monkeypatch.chdir(folder)
    interrupt(inputs, out, 6)
    before = kept_state(out)
    change(changed)

    res = cli(*inputs, "-o", out, *ARGS, "--resume", cwd=folder)
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "RESUME" in line and "changed" in line and "start over" in line
    assert os.path.basename(changed) in line
    assert not out.exists()
    assert kept_state(out) == before


def test_resume_of_unchanged_inputs_of_every_kind_gives_gdals_mosaic(tiles, monkeypatch):
    paths, folder, out = tiles
    vrt, _ = _nested_vrt(paths[:2], folder)
    nc, _ = _netcdf(paths[2:3], folder)
    zipped, _ = _vsizip(paths[3:], folder)
    inputs = vrt[:1] + nc[:1] + zipped[:1]
    monkeypatch.chdir(folder)
    # the same pixels as the four tiles (gdalbuildvrt skips a netCDF band: no colour)
    ref = vrt_reference(paths, folder / "ref.tif")
    interrupt(inputs, out, 9)

    res = cli(*inputs, "-o", out, *ARGS, "--resume", cwd=folder)
    assert res.returncode == 0, res.stderr
    assert "RESUME: 9 of 30 windows already written" in res.stderr
    assert_same_raster(out, ref)
    assert leftovers(out.parent) == []


# --------------------------------------------------------------------------- remote objects

class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves a folder with range requests, a fixed Last-Modified and a content ETag.

    A file named in ``server.failing`` answers 503 to any range past its header
    (a transient network error).
    """

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body):
        path = os.path.join(self.server.root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as fh:
            data = fh.read()
        start, end = 0, len(data) - 1
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or end), end)
        if match and start >= 16384 and os.path.basename(path) in self.server.failing:
            self.send_error(503)
            return
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(1700000000, usegmt=True))
        self.send_header("ETag", '"' + hashlib.md5(data).hexdigest() + '"')
        self.end_headers()
        if body:
            self.wfile.write(data[start:end + 1])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.failing = str(root), set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, root, f"/vsicurl/http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_resume_refuses_a_remote_object_whose_etag_changed(tiles, server):
    paths, folder, out = tiles
    _httpd, root, url = server
    remote = uncompressed_copy(paths[3], root / "last.tif")
    inputs = paths[:3] + [url + "last.tif"]
    interrupt(inputs, out, 6)
    before = kept_state(out)
    change_pixel(remote)  # same size, same Last-Modified header: only the ETag tells

    res = run_cli(*inputs, "-o", out, *ARGS, "--resume")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "RESUME" in line and "last.tif has changed" in line
    assert kept_state(out) == before
