"""Median, percentile and mode against numpy on the stacked inputs, and their memory bound."""

import os

import numpy as np
import pytest
from test_rules import ORIGIN, RES, random_tiles

import streaming_mosaic
from helpers import cli_peak_mb, read, run_cli, write_raster
from streaming_mosaic.core.report import INTERPRETER_BASELINE_MB

CASES = {  # dtype, bands, nodata, low, high, quantum
    "uint16-holes": ("uint16", 3, 0, 1, 40, None),     # few distinct values: real modes
    "float32-nan": ("float32", 2, float("nan"), -5.0, 5.0, 0.5),
}
RUNS = [(48, 1), (48, 2), (160, 1), (160, 2)]  # CHUNK_SIZE, THREADS
SMALL_BLOCKS = ("--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16")


def numpy_mode(data, valid):
    """Most frequent valid value per pixel, the smallest on ties (a plain loop over values)."""
    values = np.unique(data[valid])
    best = np.zeros(data.shape[1:], np.float64)
    best_count = np.zeros(data.shape[1:], np.int64)
    for v in values:  # ascending: a later value replaces only when strictly more frequent
        hits = ((data == v) & valid).sum(axis=0)
        better = hits > best_count
        best[better] = v
        best_count[better] = hits[better]
    return best


def reference(method, tiles, q=50.0):
    stacked = np.where(tiles.valid, tiles.data.astype(np.float64), np.nan)
    covered = tiles.valid.any(axis=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        if method == "median":
            out = np.nanmedian(stacked, axis=0)
        elif method == "percentile":
            out = np.nanpercentile(stacked, q, axis=0)
        else:
            out = numpy_mode(tiles.data.astype(np.float64), tiles.valid)
    dtype = tiles.data.dtype
    if dtype.kind in "iu":
        out = np.rint(np.nan_to_num(out))  # round half to even
    return out.astype(dtype), covered


def check(got, nodata, want, covered):
    assert covered.any() and (~covered).any()
    np.testing.assert_array_equal(got[covered], want[covered])
    if nodata is not None and np.isnan(nodata):
        assert np.isnan(got[~covered]).all()
    else:
        assert (got[~covered] == nodata).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method,q", [("median", None), ("percentile", 30.0),
                                      ("percentile", 90.0), ("mode", None)])
def test_stack_rules_match_numpy_cli(tmp_path, case, method, q):
    dtype, bands, nodata, low, high, quantum = CASES[case]
    tiles = random_tiles(tmp_path, 7, dtype, bands, nodata, low, high, n=6, quantum=quantum)
    want, covered = reference(method, tiles, q if q is not None else 50.0)
    assert (tiles.valid.sum(axis=0) >= 4).any()
    extra = ("--percentile", q) if q is not None else ()
    for chunk, threads in RUNS:
        out = tmp_path / f"{method}_{chunk}_{threads}.tif"
        run_cli(*tiles.paths, "-o", out, "--method", method, *extra, "--chunk", chunk,
                "--threads", threads, *SMALL_BLOCKS, "--quiet", check=True)
        got, _, nd = read(out)
        check(got, nd, want, covered)


@pytest.mark.parametrize("case", CASES)
def test_stack_rules_match_numpy_api(tmp_path, case):
    dtype, bands, nodata, low, high, quantum = CASES[case]
    tiles = random_tiles(tmp_path, 11, dtype, bands, nodata, low, high, n=5, quantum=quantum)
    for method, q in (("median", 50.0), ("percentile", 12.5), ("mode", 50.0)):
        want, covered = reference(method, tiles, q)
        for chunk, threads in RUNS[::3]:
            out = tmp_path / f"{method}_{chunk}_{threads}.tif"
            streaming_mosaic.mosaic(tiles.paths, out, method=method, percentile=q,
                                    chunk_size=chunk, threads=threads,
                                    creation_options={"BLOCKXSIZE": "16", "BLOCKYSIZE": "16"})
            got, _, nd = read(out)
            check(got, nd, want, covered)


def _deep_stack(tmp_path, n, size=1024, seed=3):
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 1000, (n, 1, size, size), dtype=np.uint16)
    data[:, :, :, :5] = 0  # a shared nodata collar
    paths = []
    for i in range(n):
        paths.append(write_raster(tmp_path / f"deep{i:02d}.tif", data[i],
                                  (ORIGIN[0], RES, 0, ORIGIN[1], 0, -RES), nodata=0))
    return paths, data


def test_deep_stack_stays_within_memory(tmp_path):
    paths, data = _deep_stack(tmp_path, 40)
    out = tmp_path / "median.tif"
    peak_mb = cli_peak_mb(*paths, "-o", out, "--method", "median", "--memory-mb", "64",
                          "--quiet")
    assert peak_mb <= 64 + INTERPRETER_BASELINE_MB + 16, peak_mb
    got, _, _ = read(out)
    want = np.rint(np.median(data[:, :, :, 5:].astype(np.float64), axis=0)).astype(np.uint16)
    np.testing.assert_array_equal(got[:, :, 5:], want)
    assert (got[:, :, :5] == 0).all()


def test_too_small_budget_refused_before_reading(tmp_path):
    paths, _ = _deep_stack(tmp_path, 40, size=300)
    out = tmp_path / "m.tif"
    proc = run_cli(*paths, "-o", out, "--method", "median", "--memory-mb", "16")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "MEMORY_MB" in line and "Traceback" not in line
    works = int(line.rsplit("at least ", 1)[1].split()[0])
    assert works > 16
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    with pytest.raises(streaming_mosaic.OptionError, match="MEMORY_MB"):
        streaming_mosaic.plan(paths, method="median", memory_mb=works - 1)
    plan = streaming_mosaic.plan(paths, method="median", memory_mb=works)
    assert plan.budget.fits and plan.budget.depth == 40


def test_resume_fingerprint_holds_the_percentile(tmp_path):
    from streaming_mosaic.core import checkpoint
    paths, _ = _deep_stack(tmp_path, 2, size=64)
    prints = [checkpoint.fingerprint(streaming_mosaic.plan(paths, method="percentile",
                                                           percentile=q)) for q in (10, 90)]
    assert prints[0] != prints[1]
