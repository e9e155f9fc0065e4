"""Interrupted runs (SIGKILL, Ctrl-C, SIGTERM, cancel, full disk) keep a checkpoint
and resume to the exact mosaic."""

import os
import random
import resource
import signal
import subprocess
import time

import numpy as np
import pytest
from osgeo import gdal

from helpers import (
    PYTHON,
    checksum,
    journal,
    read,
    run_cli,
    start_cli,
    tile_set,
    vrt_reference,
    wait_for_windows,
)
from streaming_mosaic.core import engine
from streaming_mosaic.core import overviews as overviews_module
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan

# Every window is flushed and journaled: a kill at any moment leaves a usable checkpoint.
FAST = ("--chunk", "256", "--checkpoint-seconds", "0", "--threads", "2")
GUARD_SECONDS = 120  # only to stop a hung child; nothing asserts on time


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """2700 x 2500 px, 2 bands: 110 windows of 256 px, long enough to kill mid-run.

    The clean (uninterrupted) CLI run is checked once against gdalbuildvrt +
    gdal_translate, so every resumed run compared with it is compared with GDAL.
    """
    folder = tmp_path_factory.mktemp("big")
    paths = tile_set(folder, seed=11, grid=(2, 2),
                     size=(1400, 1300), overlap=100, bands=2)
    clean = folder / "clean.tif"
    run_cli(*paths, "-o", clean, *FAST, "--quiet", check=True)
    ref = vrt_reference(paths, folder / "ref.tif")
    got, want = read(clean), read(ref)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1:] == want[1:]
    windows = len(make_plan(Options(inputs=paths, chunk_size=256, threads=2)).windows)
    assert windows >= 100
    return {"paths": paths, "clean": clean, "ref": ref, "windows": windows}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """1350 x 1150 px, 1 band: 30 windows of 256 px, and GDAL's own mosaic of it."""
    folder = tmp_path_factory.mktemp("small")
    paths = tile_set(folder, seed=5, grid=(2, 2), size=(700, 600), overlap=50)
    ref = vrt_reference(paths, folder / "ref.tif")
    return {"paths": paths, "ref": ref}


# --------------------------------------------------------------------------- helpers

def assert_same_raster(path, reference):
    got, want = read(path), read(reference)
    assert got[1:] == want[1:]  # geotransform, nodata
    assert got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(got[0], want[0])


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if ".partial" in n)


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def options(paths, out, **kw):
    base = dict(inputs=[str(p) for p in paths], output=str(out), chunk_size=256, threads=2,
                checkpoint_seconds=0.0)
    base.update(kw)
    return Options(**base)


def cancel_after(n):
    """A (progress, cancel) pair: cancel becomes True once ``n`` windows were written."""
    seen = {"windows": 0}

    def progress(event):
        text = event.text
        if text.startswith("window "):
            seen["windows"] += 1

    return progress, (lambda: seen["windows"] >= n), seen


def interrupt(paths, out, after, **kw):
    """Run through the core API and cancel after ``after`` windows; return the journal."""
    progress, cancel, _ = cancel_after(after)
    with pytest.raises(Cancelled):
        engine.run(options(paths, out, **kw), progress=progress, cancel=cancel)
    assert not os.path.exists(out)
    return journal(out)


# --------------------------------------------------------------------------- SIGKILL

@pytest.mark.parametrize("seed,resume_threads", [(1, 2), (2, 2), (3, 2), (4, 1)])
def test_sigkill_at_a_random_window_then_resume_gives_the_uninterrupted_mosaic(
        big, tmp_path, seed, resume_threads):
    rng = random.Random(seed)
    out = tmp_path / "mosaic.tif"
    k = rng.randint(1, big["windows"] // 2)
    proc = start_cli(*big["paths"], "-o", out, *FAST, "--quiet")
    wait_for_windows(proc, out, k)
    time.sleep(rng.uniform(0, 0.02))
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    assert not out.exists()
    assert (tmp_path / "mosaic.tif.partial").exists()
    done = journal(out)["done"]
    assert k <= done < big["windows"]

    args = list(FAST)
    args[args.index("--threads") + 1] = str(resume_threads)
    res = run_cli(*big["paths"], "-o", out, *args, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"RESUME: {done} of {big['windows']} windows already written" in res.stderr
    assert_same_raster(out, big["clean"])
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- Ctrl-C / SIGTERM

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_exits_130_keeps_the_partial_and_resume_completes_it(
        big, tmp_path, signum):
    out = tmp_path / "mosaic.tif"
    # the default checkpoint interval (10 s): the interrupt itself writes the checkpoint
    args = [*big["paths"], "-o", out, "--chunk", "256", "--threads", "2"]
    proc = start_cli(*args)
    for line in proc.stderr:  # progress: one line per 10 %, on stderr when not a terminal
        if line.startswith("20% window"):
            break
    else:
        raise AssertionError(f"the run ended before 20 %: status {proc.wait()}")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=GUARD_SECONDS)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "interrupted after" in last and "RESUME" in last
    assert not out.exists()
    assert leftovers(tmp_path) == ["mosaic.tif.partial", "mosaic.tif.partial.json"]
    done = journal(out)["done"]
    assert big["windows"] // 5 <= done < big["windows"]
    assert f"interrupted after {done} of {big['windows']} windows" in last

    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"RESUME: {done} of {big['windows']}" in res.stderr
    assert_same_raster(out, big["clean"])
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- cancel (core API)

def test_cancel_through_the_core_api_keeps_partial_and_journal_and_resume_matches_gdal(
        small, tmp_path):
    out = tmp_path / "mosaic.tif"
    total = len(make_plan(options(small["paths"], out)).windows)
    assert total >= 20
    after = int(total * 0.3)
    progress, cancel, seen = cancel_after(after)
    with pytest.raises(Cancelled) as info:  # default interval: cancelling checkpoints
        engine.run(options(small["paths"], out, checkpoint_seconds=10.0), progress=progress,
                   cancel=cancel)
    assert "RESUME" in str(info.value) and str(out) + ".partial" in str(info.value)
    assert not out.exists()
    assert leftovers(tmp_path) == ["mosaic.tif.partial", "mosaic.tif.partial.json"]
    assert journal(out)["done"] == seen["windows"] == after

    logged = []
    result = engine.run(options(small["paths"], out, resume=True),
                        log=lambda message, level="info": logged.append(message))
    assert result.resumed_from == after
    assert f"RESUME: {after} of {total} windows already written" in logged
    assert_same_raster(out, small["ref"])
    assert leftovers(tmp_path) == []


def overviews(path):
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    return [band.GetOverview(i).ReadAsArray() for i in range(band.GetOverviewCount())]


@pytest.mark.parametrize("how", ["cancel", "SIGINT"])
@pytest.mark.parametrize("finish", ["cog", "overviews"])
def test_stopping_while_finishing_keeps_the_complete_partial_and_resume_finishes_it(
        small, tmp_path, capfd, finish, how):
    clean = tmp_path / "clean" / "mosaic.tif"
    clean.parent.mkdir()
    engine.run(options(small["paths"], clean, **{finish: True}))
    out = tmp_path / "mosaic.tif"
    stage = "COG" if finish == "cog" else "overviews"
    stopped = []

    def progress(event):
        text = event.text
        if text == stage and not stopped:
            stopped.append(text)
            if how == "SIGINT":
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in a terminal

    try:
        with pytest.raises(Cancelled) as info:
            engine.run(options(small["paths"], out, **{finish: True}), progress=progress,
                       cancel=(lambda: bool(stopped)) if how == "cancel" else None)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the run instead of stopping it")
    message = str(info.value)
    assert ("interrupted" if how == "SIGINT" else "cancelled") in message
    assert "while finishing" in message and "RESUME" in message
    assert "Traceback" not in capfd.readouterr().err
    assert not out.exists()
    # OVERVIEWS' levels streamed from the windows are kept too (core/overviews.py).
    side = ["mosaic.tif.partial.pyramid"] if finish == "overviews" and overviews_module.streamed(
        make_plan(options(small["paths"], out, overviews=True))) else []
    assert leftovers(tmp_path) == ["mosaic.tif.partial", "mosaic.tif.partial.json"] + side
    total = journal(out)["total"]
    assert journal(out)["done"] == total

    result = engine.run(options(small["paths"], out, resume=True, **{finish: True}))
    assert result.resumed_from == total
    assert_same_raster(out, clean)
    assert_same_raster(clean, small["ref"])
    got, want = overviews(out), overviews(clean)
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- RESUME semantics

def _touch(paths, args):
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    return args


def _rewrite_pixel(paths, args):
    ds = gdal.Open(paths[2], gdal.GA_Update)
    ds.GetRasterBand(1).WriteRaster(40, 40, 1, 1, b"\x07")
    ds = None
    return args


CHANGES = {
    "input touched": _touch,
    "input rewritten": _rewrite_pixel,
    "other method": lambda paths, args: args + ["--method", "max"],
    "input dropped": lambda paths, args: args[1:],
    "other compression": lambda paths, args: args + ["--compress", "deflate"],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_resume_of_a_different_job_is_refused_and_leaves_the_checkpoint_alone(
        tmp_path, change):
    paths = tile_set(tmp_path, seed=5, grid=(2, 2), size=(700, 600), overlap=50)
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    interrupt(paths, out, 4)
    before = {n: checksum(out.parent / n) for n in leftovers(out.parent)}
    args = CHANGES[change](paths, list(paths))
    res = run_cli(*args, "-o", out, "--chunk", "256", "--resume")
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert "RESUME" in line and "start over" in line
    assert not out.exists()
    assert {n: checksum(out.parent / n) for n in leftovers(out.parent)} == before


def test_without_resume_an_existing_partial_is_replaced_by_a_fresh_run(small, tmp_path):
    out = tmp_path / "mosaic.tif"
    # a checkpoint of another job (method first) that must not leak into the new run
    interrupt(small["paths"], out, 7, method="first")
    res = run_cli(*small["paths"], "-o", out, *FAST, "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_raster(out, small["ref"])
    assert leftovers(tmp_path) == []


def test_resume_without_a_checkpoint_starts_from_scratch(small, tmp_path):
    out = tmp_path / "mosaic.tif"
    res = run_cli(*small["paths"], "-o", out, *FAST, "--resume")
    assert res.returncode == 0, res.stderr
    assert "RESUME: no checkpoint found" in res.stderr
    assert_same_raster(out, small["ref"])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stale", ["journal only", "partial only", "garbage journal"])
def test_resume_with_a_stale_half_checkpoint_starts_from_scratch(small, tmp_path, stale):
    out = tmp_path / "mosaic.tif"
    interrupt(small["paths"], out, 6)
    if stale == "journal only":
        os.remove(f"{out}.partial")
    elif stale == "partial only":
        os.remove(f"{out}.partial.json")
    else:
        with open(f"{out}.partial.json", "w", encoding="utf-8") as fh:
            fh.write('{"fingerprint": {"format": 1}, "do')
    res = run_cli(*small["paths"], "-o", out, *FAST, "--resume")
    assert res.returncode == 0, res.stderr
    assert "RESUME: no checkpoint found" in res.stderr
    assert_same_raster(out, small["ref"])
    assert leftovers(tmp_path) == []


def test_resume_with_automatic_chunk_uses_the_journal_chunk(big, tmp_path):
    out = tmp_path / "mosaic.tif"
    # 256 px blocks: the automatic window of this mosaic is larger than one block
    # when memory allows (small mosaics keep several windows per thread).
    blocks = "BLOCKXSIZE=256|BLOCKYSIZE=256"
    first = make_plan(options(big["paths"], out, chunk_size=0, memory_mb=16,
                              creation_options=blocks))
    later = make_plan(options(big["paths"], out, chunk_size=0, memory_mb=2048,
                              creation_options=blocks))
    assert first.budget.chunk != later.budget.chunk  # the premise of the test
    assert len(first.windows) >= 4
    saved = interrupt(big["paths"], out, 2, chunk_size=0, memory_mb=16,
                      creation_options=blocks)
    assert saved["fingerprint"]["chunk"] == first.budget.chunk

    res = run_cli(*big["paths"], "-o", out, "--chunk", "0", "--memory-mb", "2048",
                  "--co", "BLOCKXSIZE=256", "--co", "BLOCKYSIZE=256",
                  "--checkpoint-seconds", "0", "--resume")
    assert res.returncode == 0, res.stderr
    assert f"RESUME: 2 of {len(first.windows)} windows already written" in res.stderr
    assert f"of {first.budget.chunk} px" in res.stderr
    assert_same_raster(out, big["ref"])
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- full disk

def _file_size_limit(nbytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    return limit


def _run_with_file_size_limit(args, nbytes):
    return subprocess.run([PYTHON, "-m", "streaming_mosaic", *map(str, args)],
                          capture_output=True, text=True, timeout=GUARD_SECONDS,
                          preexec_fn=_file_size_limit(nbytes))


def _disk_args(paths, out, compress, seconds):
    return [*paths, "-o", out, "--chunk", "256", "--threads", "2", "--compress", compress,
            "--checkpoint-seconds", seconds, "--quiet"]


WINDOW_BYTES = 256 * 256  # one uncompressed uint8 window of the small mosaic


def test_disk_full_after_a_checkpoint_keeps_a_partial_that_resumes_to_the_exact_mosaic(
        small, tmp_path):
    out = tmp_path / "mosaic.tif"
    args = _disk_args(small["paths"], out, "lzw", "0")
    proc = _run_with_file_size_limit(args, 8 * WINDOW_BYTES + 20000)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "mosaic.tif" in line and "kept" in line and "RESUME" in line
    assert not out.exists()
    assert leftovers(tmp_path) == ["mosaic.tif.partial", "mosaic.tif.partial.json"]
    assert 0 < journal(out)["done"] < 30
    res = run_cli(*args, "--resume")  # the disk has room again
    assert res.returncode == 0, res.stderr
    assert_same_raster(out, small["ref"])
    assert leftovers(tmp_path) == []


def test_an_uncompressed_output_that_cannot_fit_fails_before_any_window(small, tmp_path):
    # Uncompressed tiles get their place when the partial is created and are then
    # rewritten in place, so a size limit below the output's size fails at once.
    out = tmp_path / "mosaic.tif"
    args = _disk_args(small["paths"], out, "none", "0")
    proc = _run_with_file_size_limit(args, 8 * WINDOW_BYTES + 20000)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "mosaic.tif.partial" in line and "uncompressed output needs" in line
    assert not out.exists() and leftovers(tmp_path) == []
    res = run_cli(*args)  # room again
    assert res.returncode == 0, res.stderr
    assert_same_raster(out, small["ref"])


def test_disk_full_before_any_checkpoint_removes_the_partial(small, tmp_path):
    out = tmp_path / "mosaic.tif"
    # no checkpoint during the run: the blocks reach the disk only at the end
    args = _disk_args(small["paths"], out, "lzw", "100000")
    proc = _run_with_file_size_limit(args, 8 * WINDOW_BYTES + 20000)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "mosaic.tif" in line and "kept" not in line
    assert not out.exists()
    assert leftovers(tmp_path) == []
