"""DASK_SCHEDULER with workers appending their compressed tiles to the shared partial
themselves (core/executors/shared.py), and the fallback when they cannot see it: the
same pixels as the local engine either way."""

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import streaming_mosaic
from helpers import PYTHON, read
from streaming_mosaic.core.errors import Cancelled, OutputError
from streaming_mosaic.core.executors import shared

pytest.importorskip("distributed")  # tools/ensure-deps.sh test installs it

from test_dask import Cluster, local_reference, same  # noqa: E402 - needs distributed

from streaming_mosaic.core.executors import dask as dask_executor  # noqa: E402,I001


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    from helpers import tile_set
    folder = tmp_path_factory.mktemp("dask_direct_tiles")
    return tile_set(folder, seed=16, grid=(2, 3), size=(700, 520), overlap=60, bands=2,
                    dtype="uint16")


@pytest.fixture(scope="module")
def reference(tiles, tmp_path_factory):
    return local_reference(tiles, tmp_path_factory.mktemp("dask_direct_ref"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("direct_cluster"))
    yield c
    c.stop()


@pytest.fixture
def payloads(monkeypatch):
    """The kind of each window's payload the client received: "placed" or "bytes"."""
    kinds = []
    original = dask_executor.RawSink.write

    def spy(self, window, payload):
        kinds.append("placed" if isinstance(payload, shared.Placed) else "bytes")
        return original(self, window, payload)
    monkeypatch.setattr(dask_executor.RawSink, "write", spy)
    return kinds


def unseen(how):
    """shared.publish as it is, but the workers are sent a target they cannot verify,
    as a worker on another machine would (no such file, or another file by that name)."""
    publish = shared.publish

    def fake(fd, path, classic):
        target = publish(fd, path, classic)
        if how == "token":
            return target._replace(token=os.urandom(shared.TOKEN_BYTES))
        return target._replace(path=os.path.join(os.path.dirname(path), "elsewhere.tif"))
    return fake


@pytest.mark.parametrize("where", ["local:2", "tcp"])
def test_workers_append_their_tiles_and_the_pixels_are_the_local_engines(
        tiles, reference, cluster, payloads, tmp_path, where):
    out = tmp_path / "out.tif"
    result = streaming_mosaic.mosaic(tiles, out, method="feather", chunk_size=256,
                                     dask=cluster.address if where == "tcp" else where)
    same(out, reference("feather", 256))
    assert payloads == ["placed"] * result.windows


def test_no_gdal_dataset_holds_the_partial_while_workers_append(tiles, cluster, tmp_path):
    """A GDAL dataset open on the partial in this process could cache its directory or
    blocks and write them back over what the workers appended: only the raw sink's file
    descriptor may be open."""
    out = tmp_path / "out.tif"
    partial = str(out) + ".partial"
    counts = []

    def progress(event):
        if event.phase == "windows":
            links = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    links.append(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass  # closed meanwhile
            counts.append(links.count(partial))
    with pytest.raises(Cancelled):
        streaming_mosaic.mosaic(tiles, out, chunk_size=256, dask=cluster.address,
                                progress=progress, cancel=lambda: len(counts) >= 3)
    streaming_mosaic.mosaic(tiles, out, chunk_size=256, dask=cluster.address, resume=True,
                            progress=progress)  # reopened by GDAL first, then closed
    assert len(counts) > 5 and set(counts) == {1}


def test_each_workers_first_task_holds_one_window(tiles, reference, tmp_path, monkeypatch):
    """So the first window is written after one window's time, not a whole task's."""
    sent = []
    original = dask_executor.DaskExecutor._send

    def spy(self):
        sent.append(len(self.batch))
        return original(self)
    monkeypatch.setattr(dask_executor.DaskExecutor, "_send", spy)
    out = tmp_path / "out.tif"
    streaming_mosaic.mosaic(tiles, out, method="mean", chunk_size=256, dask="local:2")
    same(out, reference("mean", 256))
    assert sent[:2] == [1, 1] and max(sent) == dask_executor.GROUP and sum(sent) == 32


@pytest.mark.parametrize("extra", [{}, {"nodata_output": 7, "creation_options": {
    "SPARSE_OK": "TRUE", "INTERLEAVE": "BAND", "BLOCKXSIZE": 128, "BLOCKYSIZE": 128}}])
def test_sparse_outputs_with_empty_windows_and_tiles(tiles, cluster, tmp_path, payloads, extra):
    """Empty windows and tiles are left out (not errors), the rest is the local engine's."""
    opts = dict(extent=(497440, 4987640, 522240, 5002560), chunk_size=256,
                creation_options={"SPARSE_OK": "TRUE"})
    opts.update(extra)
    local, remote = tmp_path / "local.tif", tmp_path / "dask.tif"
    streaming_mosaic.mosaic(tiles, local, **opts)
    result = streaming_mosaic.mosaic(tiles, remote, dask=cluster.address, **opts)
    same(remote, read(local))
    assert set(payloads) == {"placed"} and len(payloads) < result.windows  # empty: nothing


@pytest.mark.parametrize("how", ["token", "path"])
def test_workers_that_cannot_see_the_partial_return_the_bytes(
        tiles, reference, cluster, payloads, tmp_path, monkeypatch, how):
    monkeypatch.setattr(shared, "publish", unseen(how))
    out = tmp_path / "out.tif"
    result = streaming_mosaic.mosaic(tiles, out, method="mean", chunk_size=256,
                                     dask=cluster.address)
    same(out, reference("mean", 256))
    assert payloads == ["bytes"] * result.windows
    assert not os.path.exists(tmp_path / "elsewhere.tif")


def test_a_file_system_without_locks_falls_back_to_the_client_writing(
        tiles, reference, payloads, tmp_path, monkeypatch):
    def no_locks(fd, op, *args):
        raise OSError(37, "No locks available")
    monkeypatch.setattr(shared.fcntl, "lockf", no_locks)  # this process: the client
    out = tmp_path / "out.tif"
    result = streaming_mosaic.mosaic(tiles, out, method="last", chunk_size=512, dask="local:2")
    same(out, reference("last", 512))
    assert payloads == ["bytes"] * result.windows


JUNK = """
import os, sys
from streaming_mosaic.core.executors import shared
fd = os.open(sys.argv[1], os.O_RDWR)
shared.append(fd, {(0, 0, 0): os.urandom(12345)}, False)
"""


def test_bytes_a_killed_worker_left_at_the_end_change_no_pixel(tiles, reference, cluster,
                                                                 tmp_path):
    """A worker killed mid-write leaves bytes no tile points at; later appends go after."""
    out = tmp_path / "out.tif"
    partial = str(out) + ".partial"

    def progress(event):
        if event.phase == "windows" and event.done in (2, 5):
            # As a worker would, from another process: closing a descriptor of the partial
            # here would drop this process's locks on it.
            subprocess.run([PYTHON, "-c", JUNK, partial], check=True)
    streaming_mosaic.mosaic(tiles, out, method="median", chunk_size=256,
                            dask=cluster.address, progress=progress)
    same(out, reference("median", 256))


def test_a_worker_killed_mid_run_with_direct_writes(tiles, reference, tmp_path, payloads):
    c = Cluster(tmp_path)
    try:
        killed = []

        def progress(event):
            if event.phase == "windows" and event.done == 2 and not killed:
                os.kill(c.workers[0].pid, signal.SIGKILL)
                killed.append(event.total)
        out = tmp_path / "out.tif"
        streaming_mosaic.mosaic(tiles, out, method="feather", chunk_size=256, dask=c.address,
                                progress=progress)
        assert killed and killed[0] > 2 and c.workers[0].wait(10) == -signal.SIGKILL
    finally:
        c.stop()
    same(out, reference("feather", 256))
    assert set(payloads) == {"placed"}


def test_a_worker_failing_to_append_keeps_the_partial_for_resume(tiles, reference, tmp_path,
                                                                 monkeypatch):
    """From window 2 on, the workers cannot extend any file (ulimit -f, set from here)."""
    import resource
    monkeypatch.setattr(dask_executor, "GROUP", 1)  # few windows ahead of the client
    out = tmp_path / "out.tif"
    c = Cluster(tmp_path)

    def progress(event):
        if event.phase == "windows" and event.done == 1:
            size = os.path.getsize(str(out) + ".partial")
            for worker in c.workers:
                resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, (size, size))
    try:
        with pytest.raises(OutputError, match="file size limit.*kept") as info:
            streaming_mosaic.mosaic(tiles, out, method="mean", chunk_size=256, dask=c.address,
                                    checkpoint_seconds=0, progress=progress)
    finally:
        c.stop()
    assert "\n" not in str(info.value) and str(out) in str(info.value)
    assert os.path.exists(str(out) + ".partial") and os.path.exists(str(out) + ".partial.json")
    streaming_mosaic.mosaic(tiles, out, method="mean", chunk_size=256, resume=True)
    same(out, reference("mean", 256))


KILLED_CLIENT = """
import os, signal, sys
import streaming_mosaic
from streaming_mosaic.core.executors import shared
if sys.argv[3] == "fallback":
    publish = shared.publish
    shared.publish = lambda *a: publish(*a)._replace(token=os.urandom(shared.TOKEN_BYTES))
def progress(event):
    if event.phase == "windows" and event.done == 5:
        os.kill(os.getpid(), signal.SIGKILL)
streaming_mosaic.mosaic(sys.argv[4:], sys.argv[1], method="mean", chunk_size=256,
                        dask=sys.argv[2], checkpoint_seconds=0, progress=progress)
"""


@pytest.mark.parametrize("mode", ["direct", "fallback"])
def test_resume_after_the_client_was_killed(tiles, reference, cluster, tmp_path, mode):
    out = tmp_path / "out.tif"
    proc = subprocess.run([PYTHON, "-c", KILLED_CLIENT, str(out), cluster.address, mode,
                           *tiles], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open(str(out) + ".partial.json") as fh:
        durable = json.load(fh)["done"]
    assert durable > 0 and not os.path.exists(out)
    events = []
    streaming_mosaic.mosaic(tiles, out, method="mean", chunk_size=256, dask=cluster.address,
                            resume=True, progress=events.append)
    assert min(e.done for e in events if e.phase == "windows") == durable + 1
    same(out, reference("mean", 256))


def test_a_sparse_window_compressed_with_a_data_tile_missing_is_an_error(tiles, tmp_path,
                                                                         monkeypatch):
    """With SPARSE_OK GDAL leaves out tiles that are all nodata, so the check that every
    tile is there did not apply; a tile missing that holds data (the unexplained failure
    seen once under load) went into the output as nodata, silently."""
    from osgeo import gdal

    from streaming_mosaic.core.executors import tiles as raw
    from streaming_mosaic.core.render import render_window
    from streaming_mosaic.core.writer import gdal_type
    plan = streaming_mosaic.plan(tiles, output=str(tmp_path / "o.tif"), chunk_size=512,
                                 creation_options={"BLOCKXSIZE": 256, "BLOCKYSIZE": 256,
                                                   "SPARSE_OK": "TRUE", "INTERLEAVE": "BAND"})
    window = plan.windows[0]
    array, _ = render_window(plan, window)
    assert (array[:, 256:, 256:] != 0).any()  # the last tile holds data
    whole = raw.encode_window(plan, window, array, True)
    assert len(whole) == 2 * 4
    path = "/vsimem/test_sparse_missing_tile.tif"
    ds = gdal.GetDriverByName("GTiff").Create(path, window.w, window.h, plan.out_bands,
                                              gdal_type(plan.out_dtype),
                                              raw.window_options(plan))
    ds.WriteRaster(0, 0, window.w, 256, np.ascontiguousarray(array[:, :256]))
    ds.WriteRaster(0, 256, 256, window.h - 256, np.ascontiguousarray(array[:, 256:, :256]))
    ds = None
    blob = raw._read_vsimem(path)
    gdal.Unlink(path)
    calls = []
    monkeypatch.setattr(raw, "_encode", lambda *args: calls.append(1) or (blob, "0"))
    with pytest.raises(OutputError, match="window 1.*tile .*absent.*holds data"):
        raw.encode_window(plan, window, array, True)
    assert len(calls) == 2  # tried again once
    # A tile left out that is all nodata is what a sparse output should do.
    empty = array.copy()
    empty[:, 256:, 256:] = plan.nodata_out or 0
    assert len(raw.encode_window(plan, window, empty, True)) == 2 * 3


# The appends themselves (no cluster needed).

def tiles_of(n, size=1001, seed=0):
    rng = np.random.default_rng(seed)
    return {(0, i, 0): rng.integers(0, 255, size + i, dtype=np.uint8).tobytes()
            for i in range(n)}


def test_appends_from_threads_of_one_process_never_overlap(tmp_path):
    """POSIX locks do not exclude threads of one process (a worker with --nthreads 2)."""
    path = tmp_path / "f"
    path.write_bytes(b"II*\0")
    results = []

    def work(seed):
        for k in range(40):
            fd = os.open(path, os.O_RDWR)
            try:
                data = tiles_of(3, size=100_001, seed=seed * 100 + k)
                results.append((data, shared.append(fd, data, False)))
            finally:
                os.close(fd)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    blob = path.read_bytes()
    spans = []
    for data, places in results:
        for key, (offset, size) in places.items():
            assert blob[offset:offset + size] == data[key]
            assert offset % 2 == 0
            spans.append((offset, offset + size))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_a_revoked_target_is_never_written(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"II*\0" + bytes(100))
    fd = os.open(path, os.O_RDWR)
    try:
        target = shared.publish(fd, str(path), False)
        placed = shared.place(target, tiles_of(2))
        assert placed is not None and len(placed.places) == 2
        size = os.path.getsize(path)
        shared.revoke(fd, target)
        assert shared.place(target, tiles_of(2)) is None
        assert os.path.getsize(path) == size
    finally:
        os.close(fd)


HOLDER = """
import json, os, sys, time
from streaming_mosaic.core.executors import shared
fd = os.open(sys.argv[1], os.O_RDWR)
target = shared.publish(fd, sys.argv[1], False)
print(json.dumps(target._replace(token=target.token.hex())), flush=True)
time.sleep(300)
"""


def test_a_killed_clients_workers_write_nothing_more(tmp_path):
    """After the client was killed its tasks may still run, while the next run resumes,
    perhaps with the local engine, whose GDAL appends take no lock."""
    path = tmp_path / "f"
    path.write_bytes(b"II*\0" + bytes(100))
    client = subprocess.Popen([PYTHON, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        fields = json.loads(client.stdout.readline())
        target = shared.Target(*fields[:2], bytes.fromhex(fields[2]), fields[3],
                               tuple(fields[4]))
        assert shared.place(target, tiles_of(2)) is not None  # the client is alive
        size = os.path.getsize(path)
    finally:
        client.kill()
        client.wait()
    assert shared.place(target, tiles_of(2)) is None
    assert os.path.getsize(path) == size


STUCK = """
import os, sys, time
from streaming_mosaic.core.executors import shared
fd = os.open(sys.argv[1], os.O_RDWR)
def stuck(fd):
    os.pwrite(fd, b"half a tile", os.lseek(fd, 0, os.SEEK_END))  # killed mid-write
    print("holding", flush=True)
    time.sleep(300)
shared.append(fd, {(0, 0, 0): b"never"}, False, check=stuck)
"""


def test_a_worker_killed_holding_the_lock_blocks_no_one(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"II*\0")
    proc = subprocess.Popen([PYTHON, "-c", STUCK, str(path)], stdout=subprocess.PIPE, text=True)
    fd = os.open(path, os.O_RDWR)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(OSError):  # held
            shared.fcntl.lockf(fd, shared.fcntl.LOCK_EX | shared.fcntl.LOCK_NB, shared.APPENDS)
        proc.kill()
        proc.wait()
        data = tiles_of(2)
        places = shared.append(fd, data, False)
    finally:
        os.close(fd)
    blob = path.read_bytes()
    assert all(blob[o:o + n] == data[k] for k, (o, n) in places.items())
    assert min(o for o, _n in places.values()) >= len(b"II*\0half a tile")


def test_a_classic_tiff_a_worker_would_push_past_4_gb_is_an_output_error(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"II*\0")
    fd = os.open(path, os.O_RDWR)
    try:
        target = shared.publish(fd, str(path), True)
        os.ftruncate(fd, shared.CLASSIC_LIMIT - 1500)  # sparse
        with pytest.raises(OutputError, match="4 GB.*BIGTIFF=YES"):
            shared.place(target, tiles_of(2))
        assert os.path.getsize(path) == shared.CLASSIC_LIMIT - 1500
        assert shared.place(target._replace(classic=False), tiles_of(2)) is not None
    finally:
        os.close(fd)
