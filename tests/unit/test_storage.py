"""Object storage against real servers on 127.0.0.1: nginx for HTTP range reads, moto's S3
server for s3:// inputs and outputs. Both are started on a free port (nginx by the fixture in
tests/conftest.py, with tools/loopback.py) and stopped after;
tools/ensure-deps.sh `test` installs them (nginx-light, and moto in a venv)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from loopback import GUARD_SECONDS, free_port, stop, wait_until_up
from osgeo import gdal

from helpers import PYTHON, read, run_cli, tile_set, vrt_reference
from streaming_mosaic import mosaic
from streaming_mosaic.core import storage

MOTO_VENV = os.environ.get("MOTO_VENV", "/var/cache/streaming-mosaic/venv-moto")
ARGS = ("--chunk", "256", "--threads", "1", "--checkpoint-seconds", "0")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server, buckets "tiles" and "out"; GDAL pointed at it (here and in children)."""
    moto = os.path.join(MOTO_VENV, "bin", "moto_server")
    if not os.path.exists(moto):
        pytest.fail(f"{moto} is missing: run tools/ensure-deps.sh test")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"  # werkzeug's, one line a request
    with open(log, "w") as fh:
        proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT)
    wait_until_up(port, proc)
    env = {"AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO",
           "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for k, v in env.items():
        gdal.SetConfigOption(k, v)
    base = f"http://127.0.0.1:{port}"
    for bucket in ("tiles", "out"):
        put(f"{base}/{bucket}", b"")
    yield {"base": base, "port": port, "proc": proc, "log": log}
    stop(proc)
    for k, v in saved.items():
        gdal.SetConfigOption(k, None)
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def put(url, body):
    """A plain path-style PUT (moto takes unsigned requests), independent of GDAL."""
    # Not urllib's default form content type: moto would parse the body as a form.
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


@pytest.fixture(autouse=True)
def fresh_curl_cache():
    gdal.VSICurlClearCache()
    yield
    gdal.VSICurlClearCache()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory, nginx, s3):
    """Four overlapping tiles (1400 x 1300 px, 2 bands: 110 windows of 256 px), served by
    nginx and stored in the bucket "tiles", and GDAL's own mosaic of the local files."""
    folder = tmp_path_factory.mktemp("tiles")
    paths = tile_set(folder, seed=21, grid=(2, 2), size=(1400, 1300), overlap=100, bands=2)
    names = [os.path.basename(p) for p in paths]
    for path, name in zip(paths, names):
        shutil.copy(path, os.path.join(nginx.data, name))
        shutil.copy(path, os.path.join(nginx.data, "secret", name))
        with open(path, "rb") as fh:
            put(f"{s3['base']}/tiles/{name}", fh.read())
    return {"paths": paths, "names": names, "ref": vrt_reference(paths, folder / "ref.tif"),
            "http": [nginx.url(n) for n in names], "s3": [f"s3://tiles/{n}" for n in names]}


def remote_array(path):
    gdal.VSICurlClearCache()  # GDAL remembers that the key did not exist earlier
    ds = gdal.Open(path)  # keep ds: GDAL 3.6 can crash freeing it inside one expression
    arr = ds.ReadAsArray()
    meta = (ds.GetGeoTransform(), ds.GetRasterBand(1).GetNoDataValue(),
            ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE"))
    ds = None
    return arr, meta


def assert_same(path, ref):
    arr, (gt, nodata, _layout) = remote_array(path)
    ref_arr, ref_gt, ref_nodata = read(ref)
    np.testing.assert_array_equal(arr, ref_arr)
    assert gt == pytest.approx(ref_gt) and nodata == ref_nodata


def exists(key):
    gdal.VSICurlClearCache()
    return gdal.VSIStatL(key) is not None


def work_files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _dirs, files in os.walk(folder) for f in files)


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------- inputs

def test_path_forms_become_gdal_paths_and_a_list_file_names_inputs(tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text("# tiles\n\nhttps://example.org/a.tif\n  s3://b/k.tif  \nlocal.tif\n"
                       "/vsizip//data/z.zip/t.tif\n")
    assert storage.expand_inputs(["http://h/x.tif", f"@{listing}", "/abs/y.tif"]) == [
        "/vsicurl/http://h/x.tif", "/vsicurl/https://example.org/a.tif", "/vsis3/b/k.tif",
        str(tmp_path / "local.tif"), "/vsizip//data/z.zip/t.tif", "/abs/y.tif"]
    assert storage.gdal_path("s3://bucket/o.tif") == "/vsis3/bucket/o.tif"


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_remote_inputs_give_the_pixels_of_the_same_files_read_locally(tiles, tmp_path, kind):
    out = tmp_path / "m.tif"
    mosaic(tiles[kind], out, chunk_size=512, threads=2)
    assert_same(str(out), tiles["ref"])
    assert not [n for n in os.listdir(tmp_path) if n != "m.tif"]


def test_a_list_file_of_urls_through_the_cli_and_the_memory_of_the_child_stays_in_budget(
        tiles, tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text("# two servers\n" + "\n".join(tiles["http"][:2] + tiles["s3"][2:]) + "\n")
    out = tmp_path / "m.tif"
    memory_mb = 64
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", PYTHON, "-m", "streaming_mosaic",
                           f"@{listing}", "-o", out, "--memory-mb", str(memory_mb), "--quiet"],
                          capture_output=True, text=True, timeout=GUARD_SECONDS)
    assert proc.returncode == 0, proc.stderr
    assert_same(str(out), tiles["ref"])
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    # The same run's interpreter and libraries alone (not in the budget, see core/memory.py).
    base = subprocess.run(["/usr/bin/time", "-f", "%M", PYTHON, "-c",
                           "import streaming_mosaic.cli, streaming_mosaic.core.engine"],
                          capture_output=True, text=True, timeout=GUARD_SECONDS)
    base_mb = int(base.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb <= base_mb + memory_mb, (peak_mb, base_mb)


def moto_requests(s3, since):
    """(method, path) of the requests moto logged after byte ``since`` of its log; a
    marker request, waited for, makes sure the requests answered before are logged."""
    marker = f"/tiles/.log-sync-{time.monotonic_ns()}"
    try:
        urllib.request.urlopen(s3["base"] + marker, timeout=30)
    except urllib.error.HTTPError:
        pass  # 404, logged all the same
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline:
        with open(s3["log"], encoding="utf-8", errors="replace") as fh:
            fh.seek(since)
            text = re.sub(r"\x1b\[[0-9;]*m", "", fh.read())  # newer werkzeug colours its log
            found = re.findall(r'"([A-Z]+) (\S+) HTTP/[0-9.]+"', text)
        if (("GET", marker)) in found:
            return [r for r in found if r[1] != marker]
        time.sleep(0.01)
    with open(s3["log"], encoding="utf-8", errors="replace") as fh:
        raise AssertionError(f"moto did not log the marker request: {fh.read()[-600:]!r}")


def test_the_plan_of_s3_inputs_asks_for_each_object_alone_and_few_times(tiles, s3, tmp_path):
    """No side-car object, no bucket listing; GDAL's S3 stat is itself a 16 KB GET of
    the header, so the header's first read costs nothing more (ranges: tests/unit/
    test_remote_plan.py, with nginx)."""
    since = os.path.getsize(s3["log"])
    gdal.VSICurlClearCache()
    res = run_cli(*tiles["s3"], "-o", tmp_path / "m.tif", "--plan")
    assert res.returncode == 0, res.stderr
    asked = moto_requests(s3, since)
    keys = {f"/tiles/{name}" for name in tiles["names"]}
    assert {path for _method, path in asked} == keys, asked
    for key in keys:
        assert 1 <= sum(path == key for _method, path in asked) <= 3, asked
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- outputs

@pytest.mark.parametrize("cog", [False, True], ids=["geotiff", "cog"])
def test_an_s3_output_is_uploaded_once_complete(tiles, tmp_path, cog):
    key = f"s3://out/plain/{'c' if cog else 'g'}.tif"
    res = run_cli(*tiles["paths"], "-o", key, "--work-folder", tmp_path, "--quiet",
                  *(["--cog"] if cog else []))
    assert res.returncode == 0, res.stderr
    path = storage.gdal_path(key)
    assert_same(path, tiles["ref"])
    assert remote_array(path)[1][2] == ("COG" if cog else None)
    assert work_files(tmp_path) == []


def test_a_large_output_is_one_multipart_upload(tiles, tmp_path):
    """16 MB uncompressed: parts of storage.MIN_PART_MB (8 MB). S3 gives an object made by
    a multipart upload the ETag "<md5 of the parts' md5s>-<number of parts>"."""
    key = "s3://out/big/m.tif"
    res = run_cli(*tiles["paths"], "-o", key, "--work-folder", tmp_path, "--quiet",
                  "--compress", "none")
    assert res.returncode == 0, res.stderr
    gdal.VSICurlClearCache()
    size = gdal.VSIStatL(storage.gdal_path(key)).size
    etag = gdal.GetFileMetadata(storage.gdal_path(key), "HEADERS")["ETag"]
    parts = -(-size // (storage.MIN_PART_MB * 2**20))
    assert parts >= 2 and etag.strip('"').endswith(f"-{parts}")
    assert_same(storage.gdal_path(key), tiles["ref"])
    assert work_files(tmp_path) == []


def test_a_killed_run_leaves_no_object_and_resume_gives_the_same_mosaic(tiles, tmp_path):
    key = "/vsis3/out/killed/m.tif"
    work = storage.work_path(key, str(tmp_path))
    journal = work + ".partial.json"
    child = subprocess.Popen([PYTHON, "-m", "streaming_mosaic", *tiles["paths"], "-o", key,
                              "--work-folder", tmp_path, *ARGS, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + GUARD_SECONDS
    while not (os.path.exists(journal) and '"done": 3' in open(journal).read()):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.005)
    child.kill()
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert not exists(key)
    assert os.path.exists(work + ".partial")

    res = run_cli(*tiles["paths"], "-o", key, "--work-folder", tmp_path, *ARGS, "--resume")
    assert res.returncode == 0, res.stderr
    assert "of 110 windows already written" in res.stderr
    assert_same(key, tiles["ref"])
    assert work_files(tmp_path) == []


def wait_for_journal(child, journal, done):
    deadline = time.monotonic() + GUARD_SECONDS
    while True:
        try:
            with open(journal, encoding="utf-8") as fh:
                if json.load(fh)["done"] >= done:
                    return
        except (OSError, ValueError):
            pass
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.002)


def test_a_failed_upload_keeps_the_key_as_it_was_and_resume_only_uploads(tiles, tmp_path, s3):
    key = "/vsis3/out/again/m.tif"
    put(f"{s3['base']}/out/again/m.tif", b"old object")
    journal = storage.work_path(key, str(tmp_path)) + ".partial.json"
    child = subprocess.Popen([PYTHON, "-m", "streaming_mosaic", *tiles["paths"], "-o", key,
                              "--work-folder", tmp_path, *ARGS, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, GDAL_HTTP_TIMEOUT="2", GDAL_HTTP_MAX_RETRY="0"))
    wait_for_journal(child, journal, 100)
    s3["proc"].send_signal(signal.SIGSTOP)  # the server stops answering before the upload
    try:
        _, stderr = child.communicate(timeout=GUARD_SECONDS)
    finally:
        s3["proc"].send_signal(signal.SIGCONT)
    assert child.returncode == 2, stderr
    assert f"{key}: the upload failed" in one_line(stderr)
    gdal.VSICurlClearCache()
    assert gdal.VSIStatL(key).size == len(b"old object")
    res = run_cli(*tiles["paths"], "-o", key, "--work-folder", tmp_path, *ARGS, "--resume")
    assert res.returncode == 0, res.stderr
    assert "110 of 110 windows already written" in res.stderr
    assert_same(key, tiles["ref"])
    assert work_files(tmp_path) == []


# --------------------------------------------------------------------------- failures

def test_404_403_and_unreachable_are_one_line_at_plan_time_and_nothing_is_written(
        tiles, tmp_path, nginx):
    closed = free_port()
    name = tiles["names"][0]
    cases = [
        ([nginx.url("missing.tif")], "s3://out/f/a.tif", "missing.tif: does not exist"),
        ([nginx.url(f"secret/{name}")], "s3://out/f/b.tif", f"secret/{name}: access denied"),
        ([f"http://127.0.0.1:{closed}/{name}"], "s3://out/f/c.tif", "cannot connect"),
        (["s3://tiles/missing.tif"], "s3://out/f/d.tif", "missing.tif: does not exist"),
        (tiles["paths"], "s3://nobucket/e.tif", "/vsis3/nobucket/e.tif: the bucket"),
        (tiles["paths"], "s3://out/f/f.tif", "/vsis3/out/f/f.tif: cannot connect"),
    ]
    for inputs, key, expected in cases:
        env = {"AWS_S3_ENDPOINT": f"127.0.0.1:{closed}"} if key.endswith("f.tif") else {}
        res = run_cli(*inputs, "-o", key, "--work-folder", tmp_path, env=env)
        assert res.returncode == 2, (key, res.stderr)
        assert expected in one_line(res.stderr)
        assert not exists(storage.gdal_path(key))
        assert work_files(tmp_path) == []


def test_the_server_stopped_mid_run_exits_2_keeps_the_partial_and_resume_finishes(
        tiles, tmp_path, nginx):
    out = tmp_path / "m.tif"
    args = (*tiles["http"], "-o", out, *ARGS)
    child = subprocess.Popen([PYTHON, "-m", "streaming_mosaic", *args, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, GDAL_HTTP_MAX_RETRY="1",
                                      GDAL_HTTP_RETRY_DELAY="0.1"))
    journal = f"{out}.partial.json"
    deadline = time.monotonic() + GUARD_SECONDS
    while not (os.path.exists(journal) and '"done": 3' in open(journal).read()):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.005)
    nginx.stop()
    try:
        _, stderr = child.communicate(timeout=GUARD_SECONDS)
    finally:
        nginx.start()
    assert child.returncode == 2, stderr
    assert "were kept" in one_line(stderr)
    assert os.path.exists(f"{out}.partial") and not os.path.exists(out)
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert_same(str(out), tiles["ref"])
