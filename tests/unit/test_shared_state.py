"""A run leaves GDAL's process-wide and per-thread state as it found it, writes nothing
beside its inputs, and needs no QGIS."""

import dataclasses
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from osgeo import gdal

from helpers import PYTHON, corrupt_block, folder_state, read, run_cli, tile_set, vrt_reference
from streaming_mosaic.core import engine
from streaming_mosaic.core.errors import Cancelled, InputError, OptionError
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan

# Config options GDAL or a run could plausibly touch; each gets a sentinel value.
CONFIG = {
    "GDAL_CACHEMAX": "77",
    "GDAL_NUM_THREADS": "1",
    "GDAL_PAM_ENABLED": "YES",
    "GDAL_DISABLE_READDIR_ON_OPEN": "FALSE",
    "GTIFF_DIRECT_IO": "NO",
    "CHECK_DISK_FREE_SPACE": "YES",
    "VSI_CACHE": "FALSE",
    "CPL_DEBUG": "OFF",
}
THREAD_LOCAL = {"GDAL_NUM_THREADS": "2", "GDAL_TIFF_INTERNAL_MASK": "YES",
                "SM_TEST_SENTINEL": "kept"}
CACHE_SENTINEL = 123 * 2 ** 20 + 4096


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    paths = tile_set(folder, seed=8, grid=(2, 2), size=(700, 600), overlap=50)
    return folder, paths, vrt_reference(paths, tmp_path_factory.mktemp("ref") / "ref.tif")


def global_config():
    """Process-wide config values, read from a fresh thread (no thread-local values there)."""
    values = {}
    reader = threading.Thread(target=lambda: values.update(
        {k: gdal.GetConfigOption(k, None) for k in CONFIG}))
    reader.start()
    reader.join()
    return values


@pytest.fixture
def gdal_state():
    """Set sentinel GDAL state, yield a snapshot function, restore everything after."""
    saved_cache = gdal.GetCacheMax()
    saved_global = global_config()
    saved_local = {k: gdal.GetThreadLocalConfigOption(k, None) for k in THREAD_LOCAL}
    gdal.SetCacheMax(CACHE_SENTINEL)
    for k, v in CONFIG.items():
        gdal.SetConfigOption(k, v)
    for k, v in THREAD_LOCAL.items():
        gdal.SetThreadLocalConfigOption(k, v)
    caught = []

    def handler(level, number, message):
        caught.append(message)

    gdal.PushErrorHandler(handler)

    def snapshot():
        return {"cache": gdal.GetCacheMax(),
                "exceptions": gdal.GetUseExceptions(),
                "global": global_config(),
                "local": {k: gdal.GetThreadLocalConfigOption(k, None) for k in THREAD_LOCAL}}

    def handler_is_on_top():
        # GDAL messages of this thread still reach the handler pushed before the run
        del caught[:]
        gdal.Error(gdal.CE_Warning, 1, "probe after the run")
        return caught == ["probe after the run"]

    try:
        yield snapshot, handler_is_on_top
    finally:
        gdal.PopErrorHandler()
        gdal.SetCacheMax(saved_cache)
        for k, v in saved_global.items():
            gdal.SetConfigOption(k, v)
        for k, v in saved_local.items():
            gdal.SetThreadLocalConfigOption(k, v)


def _opts(paths, out, **kw):
    base = dict(inputs=[str(p) for p in paths], output=str(out), chunk_size=256, threads=2,
                memory_mb=64, checkpoint_seconds=0.0)
    base.update(kw)
    return Options(**base)


def _success(paths, out, folder):
    engine.run(_opts(paths, out))
    return None


def _bad_option(paths, out, folder):
    with pytest.raises(OptionError):
        engine.run(_opts(paths, out, bands="0"))


def _corrupt_input_mid_run(paths, out, folder):
    bad = os.path.join(folder, "bad.tif")
    with open(paths[-1], "rb") as src, open(bad, "wb") as dst:
        dst.write(src.read())
    corrupt_block(bad, 1, 1)
    with pytest.raises(InputError):
        engine.run(_opts(paths[:-1] + [bad], out))


def _cancelled(paths, out, folder):
    calls = []
    with pytest.raises(Cancelled):
        engine.run(_opts(paths, out), progress=lambda event: calls.append(event.text),
                   cancel=lambda: len(calls) >= 3)


OUTCOMES = {"success": _success, "bad option": _bad_option,
            "corrupt input mid-run": _corrupt_input_mid_run, "cancelled": _cancelled}


@pytest.mark.parametrize("exceptions", [False, True], ids=["no-exceptions", "UseExceptions"])
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_gdal_cache_config_and_error_handlers_are_restored_after_a_run(
        tiles, tmp_path, gdal_state, outcome, exceptions):
    snapshot, handler_is_on_top = gdal_state
    _, paths, ref = tiles
    was = gdal.GetUseExceptions()
    if exceptions:
        gdal.UseExceptions()
    try:
        before = snapshot()
        OUTCOMES[outcome](paths, tmp_path / "mosaic.tif", tmp_path)
        after = snapshot()
        on_top = handler_is_on_top()
    finally:
        if exceptions and not was:
            gdal.DontUseExceptions()
    assert before["cache"] == CACHE_SENTINEL and before["global"] == CONFIG
    assert before["local"] == THREAD_LOCAL
    assert after == before
    assert on_top
    if outcome == "success":
        got, want = read(tmp_path / "mosaic.tif"), read(ref)
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("extra", [[], ["--overviews"], ["--cog"], ["--method", "feather"],
                                   ["--target-crs", "EPSG:3857"]],
                         ids=["plain", "overviews", "cog", "feather", "reprojected"])
def test_a_run_writes_nothing_beside_its_inputs_or_its_output(tiles, tmp_path, extra):
    folder, paths, _ = tiles
    before = folder_state(folder)
    out = tmp_path / "mosaic.tif"
    res = run_cli(*paths, "-o", out, "--chunk", "256", "--quiet", *extra)
    assert res.returncode == 0, res.stderr
    assert folder_state(folder) == before  # no .aux.xml, .ovr, .msk; bytes unchanged
    assert os.listdir(tmp_path) == ["mosaic.tif"]
    assert gdal.Open(str(out)) is not None


def test_two_concurrent_runs_in_one_process_match_sequential_runs_and_share_the_cache(
        tiles, tmp_path, gdal_state):
    snapshot, _ = gdal_state
    _, paths, ref = tiles
    jobs = {"a": _opts(paths, tmp_path / "a.tif", memory_mb=64),
            "b": _opts(paths[::-1], tmp_path / "b.tif", memory_mb=128, method="max")}
    budgets = {k: make_plan(o).budget.cache for k, o in jobs.items()}
    assert len(make_plan(jobs["a"]).windows) > 3

    for key, opts in jobs.items():  # sequential references
        engine.run(dataclasses.replace(opts, output=str(tmp_path / f"seq_{key}.tif")))
    before = snapshot()

    met, go = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    seen, errors = {}, {}

    def job(key):
        def progress(event):
            text = event.text
            if text.startswith("window 1/"):
                met.wait()  # both runs are inside their cache budget now
                seen[key] = gdal.GetCacheMax()
                go.wait()
        try:
            engine.run(jobs[key], progress=progress)
        except BaseException as exc:  # reported below
            errors[key] = exc
            met.abort()
            go.abort()

    threads = [threading.Thread(target=job, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == {}
    assert seen == {"a": sum(budgets.values()), "b": sum(budgets.values())}
    assert snapshot() == before
    for key in jobs:
        got, want = read(tmp_path / f"{key}.tif"), read(tmp_path / f"seq_{key}.tif")
        assert got[1:] == want[1:]
        np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(read(tmp_path / "a.tif")[0], read(ref)[0])


NO_QGIS = r"""
import importlib, pkgutil, sys
sys.modules["qgis"] = None  # any "import qgis..." now raises ImportError
sys.modules["PyQt5"] = None
import streaming_mosaic.core as core
names = [m.name for m in pkgutil.iter_modules(core.__path__)]
for name in names:
    importlib.import_module("streaming_mosaic.core." + name)
from streaming_mosaic import cli
status = cli.main(sys.argv[1:])
loaded = [k for k, v in sys.modules.items()
          if v is not None and (k.split(".")[0] in ("qgis", "PyQt5"))]
print(len(names), loaded)
sys.exit(status)
"""


def test_core_and_cli_run_with_qgis_unimportable(tmp_path):
    paths = tile_set(tmp_path, seed=9, grid=(1, 2), size=(300, 260), overlap=20)
    out = tmp_path / "mosaic.tif"
    res = subprocess.run([PYTHON, "-c", NO_QGIS, *paths, "-o", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    count, loaded = res.stdout.split(" ", 1)
    assert int(count) >= 15 and loaded.strip() == "[]"
    got, want = read(out), read(vrt_reference(paths, tmp_path / "ref.tif"))
    np.testing.assert_array_equal(got[0], want[0])
    assert sys.modules.get("streaming_mosaic") is not None
