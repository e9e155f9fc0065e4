"""Durable work survives real-world inputs and runs: what an input really reads is part of
the checkpoint, one run at a time per OUTPUT, a read error keeps the windows already written,
and the end of a run (COG step) says what happened and leaves no stray file."""

import email.utils
import hashlib
import http.server
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

from helpers import (
    PYTHON,
    corrupt_block,
    journal,
    read,
    run_cli,
    start_cli,
    tile_set,
    vrt_reference,
    wait_for_windows,
)
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

    def progress(event):
        text = event.text
        if text.startswith("window "):
            seen.append(text)

    with pytest.raises(Cancelled):
        engine.run(options(paths, out, **kw), progress=progress,
                   cancel=lambda: len(seen) >= after)
    assert journal(out)["done"] == after


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
    (a network error), one in ``server.flaky`` to that many ranges (a transient one).
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
        if match and start >= 16384 and self._fails(os.path.basename(path)):
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

    def _fails(self, name):
        if name in self.server.failing:
            return True
        with self.server.lock:
            left = self.server.flaky.get(name, 0)
            self.server.flaky[name] = max(0, left - 1)
        return left > 0

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.failing, httpd.flaky, httpd.lock = str(root), set(), {}, threading.Lock()
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


# --------------------------------------------------------------------------- one run per OUTPUT

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """2700 x 2500 px, 2 bands: 110 windows of 256 px, and GDAL's own mosaic of it."""
    folder = tmp_path_factory.mktemp("big")
    paths = tile_set(folder, seed=11, grid=(2, 2), size=(1400, 1300), overlap=100, bands=2)
    return {"paths": paths, "ref": vrt_reference(paths, folder / "ref.tif")}


@pytest.mark.parametrize("resume", [False, True], ids=["again", "with --resume"])
def test_a_second_run_on_the_same_output_exits_2_and_touches_nothing(big, tmp_path, resume):
    out = tmp_path / "mosaic.tif"
    first = start_cli(*big["paths"], "-o", out, *ARGS, "--quiet")
    wait_for_windows(first, out, 3)
    first.send_signal(signal.SIGSTOP)  # holds still while the second run tries
    try:
        before = kept_state(out)
        second = run_cli(*big["paths"], "-o", out, *ARGS, *(["--resume"] if resume else []))
        assert second.returncode == 2, second.stderr
        line = one_line(second.stderr)
        assert f"mosaic.tif: is being written by another run, pid {first.pid}" in line
        assert kept_state(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=GUARD_SECONDS)
    assert first.returncode == 0, stderr
    assert_same_raster(out, big["ref"])
    assert leftovers(tmp_path) == []


def test_the_lock_of_a_killed_run_does_not_block_resume(big, tmp_path):
    out = tmp_path / "mosaic.tif"
    first = start_cli(*big["paths"], "-o", out, *ARGS, "--quiet")
    wait_for_windows(first, out, 3)
    first.kill()
    first.communicate()
    assert first.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    with open(runlock.lock_path(str(out)), encoding="ascii") as fh:
        assert fh.read().strip() == str(first.pid)  # left behind, but no longer held
    done = journal(out)["done"]

    res = run_cli(*big["paths"], "-o", out, *ARGS, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"RESUME: {done} of 110 windows already written" in res.stderr
    assert_same_raster(out, big["ref"])
    assert leftovers(tmp_path) == []


def test_two_runs_in_one_process_on_the_same_output_exclude_each_other(tiles):
    paths, _folder, out = tiles
    interrupt(paths, out, 5)
    before = kept_state(out)
    with runlock.exclusive(str(out)):  # a run in another thread of this process (QGIS)
        with pytest.raises(OutputError) as info:
            engine.run(options(paths, out))
    assert f"is being written by another run, pid {os.getpid()}" in str(info.value)
    assert not out.exists()
    assert kept_state(out) == before


# --------------------------------------------------------------------------- read errors

KEPT = ["mosaic.tif.partial", "mosaic.tif.partial.json"]


def test_a_corrupt_input_keeps_the_windows_written_and_resume_continues_once_it_is_repaired(
        tiles, tmp_path):
    paths, folder, out = tiles
    ref = vrt_reference(paths, tmp_path / "ref.tif")
    pristine = shutil.copy(paths[-1], tmp_path / "pristine.tif")
    corrupt_block(paths[-1], 1, 1, seed=3)  # first read at window row 3 of 5

    res = run_cli(*paths, "-o", out, *ARGS, "--quiet")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert os.path.basename(paths[-1]) in line and "kept" in line and "RESUME" in line
    assert not out.exists()
    assert leftovers(out.parent) == KEPT
    done = journal(out)["done"]
    assert 0 < done < 30

    shutil.copy(pristine, paths[-1])  # repaired: the same size, another mtime
    res = run_cli(*paths, "-o", out, *ARGS, "--resume")
    assert res.returncode == 0, res.stderr
    assert "changed since it failed to read" in res.stderr
    resumed = int(re.search(r"RESUME: (\d+) of 30 windows already written", res.stderr)[1])
    assert 0 < resumed <= done  # only the windows reading the repaired input are redone
    assert_same_raster(out, ref)
    assert leftovers(out.parent) == []


def test_after_a_read_error_another_changed_input_still_refuses_resume(tiles):
    paths, _folder, out = tiles
    corrupt_block(paths[-1], 1, 1, seed=3)
    assert run_cli(*paths, "-o", out, *ARGS).returncode == 2
    before = kept_state(out)
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    res = run_cli(*paths, "-o", out, *ARGS, "--resume")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "RESUME" in line and os.path.basename(paths[0]) in line and "start over" in line
    assert kept_state(out) == before


def _last_served(paths, server):
    """The server and the inputs: the first three tiles local, the fourth served as last.tif."""
    httpd, root, url = server
    shutil.copy(paths[3], root / "last.tif")
    return httpd, paths[:3] + [url + "last.tif"]


def test_a_transient_network_error_keeps_the_windows_and_resume_continues_where_it_stopped(
        tiles, server, tmp_path):
    paths, _folder, out = tiles
    httpd, inputs = _last_served(paths, server)
    ref = vrt_reference(paths, tmp_path / "ref.tif")
    httpd.failing.add("last.tif")  # the server answers 503 to its pixel ranges

    res = run_cli(*inputs, "-o", out, *ARGS, "--quiet")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "last.tif" in line and "kept" in line and "RESUME" in line
    assert leftovers(out.parent) == KEPT
    done = journal(out)["done"]
    assert 0 < done < 30

    httpd.failing.clear()  # the network is back
    res = run_cli(*inputs, "-o", out, *ARGS, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"RESUME: {done} of 30 windows already written" in res.stderr
    assert "changed" not in res.stderr
    assert_same_raster(out, ref)
    assert leftovers(out.parent) == []


def test_transient_errors_are_retried_with_gdals_settings_unless_the_user_sets_them(
        tiles, server, tmp_path):
    paths, _folder, out = tiles
    httpd, inputs = _last_served(paths, server)
    assert not {"GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY"} & set(os.environ)
    # Three 503 answers, then the pixels: the same run fails with no retries (below).
    httpd.flaky["last.tif"] = 3
    res = run_cli(*inputs, "-o", out, *ARGS, "--quiet")
    assert res.returncode == 0, res.stderr
    assert httpd.flaky["last.tif"] == 0
    assert_same_raster(out, vrt_reference(paths, tmp_path / "ref.tif"))

    httpd.flaky["last.tif"] = 3
    res = run_cli(*inputs, "-o", tmp_path / "again.tif", *ARGS, "--quiet",
                  env={"GDAL_HTTP_MAX_RETRY": "0"})
    assert res.returncode == 2, res.stderr
    assert "last.tif" in one_line(res.stderr)


def test_an_input_error_at_plan_time_leaves_the_checkpoint_as_it_was(tiles):
    paths, _folder, out = tiles
    interrupt(paths, out, 5)
    before = kept_state(out)
    with open(paths[1], "w", encoding="utf-8") as fh:
        fh.write("not a raster any more\n")
    for extra in ([], ["--resume"]):
        res = run_cli(*paths, "-o", out, *ARGS, *extra)
        assert res.returncode == 2, res.stderr
        assert os.path.basename(paths[1]) in one_line(res.stderr)
        assert kept_state(out) == before
        assert not out.exists()


# --------------------------------------------------------------------------- the COG step

def overviews(path):
    ds = gdal.Open(str(path))  # kept open while its band is used
    band = ds.GetRasterBand(1)
    return [band.GetOverview(i).ReadAsArray() for i in range(band.GetOverviewCount())]


def assert_same_with_overviews(path, reference):
    assert_same_raster(path, reference)
    got, want = overviews(path), overviews(reference)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def cog_partial_size(paths, folder):
    """The size of the partial a COG run has when its COG step starts (the uncompressed
    intermediate with its overviews, see core/pyramid.py)."""
    out = folder / "probe.tif"
    started = []
    with pytest.raises(Cancelled):
        engine.run(options(paths, out, cog=True),
                   progress=lambda e: started.append(e) if e.phase == "cog" else None,
                   cancel=lambda: bool(started))
    size = os.path.getsize(str(out) + ".partial")
    for name in leftovers(folder):
        os.remove(folder / name)
    return size


@pytest.fixture
def clean_cog(tiles, tmp_path):
    """The COG one uninterrupted run makes, and the size of the partial of a COG run."""
    paths = tiles[0]
    folder = tmp_path / "clean"
    folder.mkdir()
    plain = folder / "plain.tif"
    run_cli(*paths, "-o", plain, *ARGS, "--quiet", check=True)
    assert_same_raster(plain, vrt_reference(paths, folder / "ref.tif"))
    cog = folder / "cog.tif"
    run_cli(*paths, "-o", cog, *ARGS, "--cog", "--quiet", check=True)
    assert_same_raster(cog, plain)
    return cog, cog_partial_size(paths, folder)


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own tmpfs; yields it and a function resizing it (bytes)."""
    folder = tmp_path / "disk"
    folder.mkdir()

    def mount(nbytes, remount=False):
        size = f"size={nbytes // 1024}k"
        cmd = (["mount", "-o", f"remount,{size}", str(folder)] if remount
               else ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(folder)])
        return subprocess.run(cmd, capture_output=True).returncode == 0

    if os.geteuid() != 0 or not mount(64 * 2**20):
        pytest.skip("a small tmpfs cannot be mounted here (needs root)")
    yield folder, lambda nbytes: mount(nbytes, remount=True)
    subprocess.run(["umount", str(folder)], check=False)


def test_disk_full_during_the_cog_step_says_so_and_resume_makes_only_the_cog(
        tiles, clean_cog, small_disk):
    paths = tiles[0]
    cog, partial_size = clean_cog
    disk, resize = small_disk
    assert resize(partial_size * 5 // 4)  # room for the partial, not for the COG too
    out = disk / "mosaic.tif"

    res = run_cli(*paths, "-o", out, *ARGS, "--cog", "--quiet")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    # Where the disk fills: the COG, or before it the temporary copy of a level the last
    # overview levels are computed in (core/pyramid.py: so on GDAL 3.13 here).
    assert ("writing the COG failed: no space left on the device" in line
            or "computing the overviews failed: no space left on the device" in line)
    assert "complete partial output" in line and "kept" in line and "RESUME" in line
    assert leftovers(disk) == KEPT
    assert journal(out)["done"] == journal(out)["total"]

    assert resize(64 * 2**20)  # room again
    res = run_cli(*paths, "-o", out, *ARGS, "--cog", "--resume")
    assert res.returncode == 0, res.stderr
    assert "RESUME: 30 of 30 windows already written" in res.stderr
    assert_same_with_overviews(out, cog)
    assert leftovers(disk) == []


def test_a_file_size_limit_below_the_cog_intermediate_says_so_and_keeps_nothing(
        tiles, clean_cog):
    """The COG is smaller than its uncompressed intermediate: a file size limit stops
    the run when the intermediate is laid out, before any window."""
    paths, _folder, out = tiles
    cog, partial_size = clean_cog
    limit = (partial_size + os.path.getsize(cog)) // 2

    def limited():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill

    res = subprocess.run([PYTHON, "-m", "streaming_mosaic", *paths, "-o", str(out), *ARGS,
                          "--cog", "--quiet"], capture_output=True, text=True,
                         timeout=GUARD_SECONDS, preexec_fn=limited)
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "cannot lay out the output's tiles" in line and "file size limit" in line
    assert leftovers(out.parent) == []


KILL_IN_COG = """
import os, signal, sys
from streaming_mosaic.core import engine
from streaming_mosaic.core.options import Options

def progress(event):
    fraction, text = event.fraction, event.text
    if text == "COG" and fraction > 0.9:
        os.kill(os.getpid(), signal.SIGKILL)  # a crash half-way through the COG step

engine.run(Options(inputs=sys.argv[2:], output=sys.argv[1], chunk_size=256, threads=2,
                   checkpoint_seconds=0.0, cog=True), progress=progress)
"""


def test_a_cog_step_killed_half_way_leaves_no_cog_file_after_the_next_run_ends(
        tiles, clean_cog):
    paths, _folder, out = tiles
    cog, _ = clean_cog
    killed = subprocess.run([PYTHON, "-c", KILL_IN_COG, str(out), *paths], capture_output=True,
                            text=True, timeout=GUARD_SECONDS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stray = [n for n in leftovers(out.parent) if ".cog.partial" in n]
    assert stray  # the premise: the crash left the COG step's files

    interrupt(paths, out, 2, cog=True)  # a new run, cancelled: only partial + checkpoint stay
    assert leftovers(out.parent) == KEPT

    engine.run(options(paths, out, cog=True, resume=True))
    assert_same_with_overviews(out, cog)
    assert leftovers(out.parent) == []
