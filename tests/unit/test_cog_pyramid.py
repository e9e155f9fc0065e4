"""COG=true with overviews streamed from the windows (core/pyramid.py).

Every COG is compared pixel by pixel with an independent reference: our plain
(non-COG) mosaic, and GDAL's own AVERAGE overviews built on a copy of it
(BuildOverviews, GDAL's GeoTIFF overview code), whatever THREADS and CHUNK_SIZE.
"""

import os
import signal
import subprocess

import numpy as np
import pytest
from osgeo import gdal
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate as validate_cog

from helpers import PYTHON, cli_peak_mb, journal
from streaming_mosaic.core import checkpoint, engine, pyramid
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import FREED_CACHE_RESIDENT, make_plan
from streaming_mosaic.core.report import INTERPRETER_BASELINE_MB
from synth import tile_set, write_raster

# Tile sizes of a 2 x 3 set with 16 px overlaps, and the mosaic they give:
GRIDS = {
    "even": (528, 528),   # 1552 x 1040: every level halves exactly, all streamed
    "mixed": (532, 528),  # 1564 x 1040: levels 1-2 streamed, level 3 (chunk 256) at the end
    "odd": (531, 529),    # 1561 x 1042: odd width, every level computed at the end
}


def tile_sets(tmp_path_factory):
    """A tile set per grid of GRIDS (shared with test_overview_pyramid)."""
    made = {}
    for name, size in GRIDS.items():
        folder = tmp_path_factory.mktemp(name)
        made[name] = tile_set(folder, seed=17, grid=(2, 3), size=size, overlap=16, bands=3,
                              dtype="uint16", nodata=0)
    return made


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return tile_sets(tmp_path_factory)


def run(paths, out, **kw):
    opts = dict(inputs=[str(p) for p in paths], output=str(out), compression="lzw")
    opts.update(kw)
    return engine.run(Options(**opts))


def levels(path):
    """[(bands, h, w) array per overview level] of a GeoTIFF."""
    ds = gdal.Open(str(path))
    count = ds.GetRasterBand(1).GetOverviewCount()
    return [np.stack([ds.GetRasterBand(b + 1).GetOverview(k).ReadAsArray()
                      for b in range(ds.RasterCount)]) for k in range(count)]


def gdal_overviews(plain, folder, count, resampling="AVERAGE"):
    """GDAL's overviews (factors 2 .. 2**count) of a copy of ``plain`` (BuildOverviews:
    an odd level's size rounded up)."""
    copy = str(folder / f"gdal-{os.path.basename(str(plain))}")
    gdal.Translate(copy, str(plain), creationOptions=["TILED=YES"])
    ds = gdal.Open(copy, gdal.GA_Update)
    assert ds.BuildOverviews(resampling, [2 ** (k + 1) for k in range(count)]) == 0
    ds = None
    return levels(copy)


def gdal_cog_overviews(plain, folder, block, resampling="AVERAGE"):
    """The overviews of ``gdal_translate -of COG`` of ``plain`` (sizes rounded down)."""
    copy = str(folder / f"gdal-cog-{os.path.basename(str(plain))}")
    gdal.Translate(copy, str(plain), format="COG", creationOptions=[
        f"BLOCKSIZE={block}", f"RESAMPLING={resampling}", "COMPRESS=NONE"])
    return levels(copy)


def assert_cog_matches(cog, plain, folder, resampling="AVERAGE"):
    assert validate_cog(str(cog), full_check=True)[:2] == ([], [])
    got_ds, want_ds = gdal.Open(str(cog)), gdal.Open(str(plain))
    np.testing.assert_array_equal(got_ds.ReadAsArray(), want_ds.ReadAsArray())
    got = levels(cog)
    assert got
    block = got_ds.GetRasterBand(1).GetBlockSize()[0]
    want = gdal_cog_overviews(plain, folder, block, resampling)
    assert [a.shape for a in got] == [b.shape for b in want]
    for k, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), f"level {k + 1}: {int((a != b).sum())} pixels differ"
    # Where GDAL's GeoTIFF overviews have the same size, the same pixels too.
    for k, (a, b) in enumerate(zip(got, gdal_overviews(plain, folder, len(got), resampling))):
        if a.shape == b.shape:
            assert np.array_equal(a, b), f"level {k + 1}: {int((a != b).sum())} pixels differ"


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("chunk", [256, 512])
def test_cog_overviews_equal_gdal_average_of_the_plain_mosaic(sets, tmp_path, grid, chunk):
    paths = sets[grid]
    plain = tmp_path / "plain.tif"
    run(paths, plain, chunk_size=chunk)
    assert (gdal.Open(str(plain)).ReadAsArray() == 0).mean() > 0.003  # nodata holes and collars
    for threads in (1, 2):
        cog = tmp_path / f"cog{threads}.tif"
        run(paths, cog, cog=True, chunk_size=chunk, threads=threads)
        assert_cog_matches(cog, plain, tmp_path)
    np.testing.assert_array_equal(levels(tmp_path / "cog1.tif")[-1],
                                  levels(tmp_path / "cog2.tif")[-1])


def test_which_levels_are_streamed(sets):
    def plan(grid, chunk):
        return make_plan(Options(inputs=[str(p) for p in sets[grid]], output="x.tif", cog=True,
                                 chunk_size=chunk))
    assert [pyramid.streamed(plan(g, 256)) for g in ("even", "mixed", "odd")] == [3, 2, 0]
    assert [len(pyramid.factors(plan(g, 256))) for g in ("even", "mixed", "odd")] == [3, 3, 3]
    assert pyramid.partial_options(plan("even", 256))["COMPRESS"] == "NONE"


def test_alpha_cog_overviews_equal_gdal_average(sets, tmp_path):
    paths = sets["mixed"]
    plain = tmp_path / "plain.tif"
    run(paths, plain, chunk_size=256, add_alpha=True)
    cog = tmp_path / "cog.tif"
    run(paths, cog, chunk_size=256, add_alpha=True, cog=True)
    assert gdal.Open(str(cog)).GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    assert_cog_matches(cog, plain, tmp_path)


def noise_input(folder, dtype, size, palette=False):
    """One input of random values with random nodata pixels and a nodata block."""
    rng = np.random.default_rng(23)
    w, h = size
    data = rng.integers(1, 250 if palette else 60000, (1 if palette else 3, h, w))
    data[:, rng.random((h, w)) < 0.2] = 0
    data[:, 100:180, 50:300] = 0
    path = write_raster(str(folder / "noise.tif"), data.astype(dtype),
                        (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0), nodata=0)
    if palette:
        ds = gdal.Open(path, gdal.GA_Update)
        table = gdal.ColorTable()
        for i in range(256):
            table.SetColorEntry(i, (i, 255 - i, (7 * i) % 256, 255))
        ds.GetRasterBand(1).SetColorTable(table)
        ds = None
    return [path]


@pytest.mark.parametrize("kind,size,levels", [
    ("alpha", (2400, 2200), (3, 4)),     # levels 1-3 streamed, level 4 at the end
    ("palette", (1201, 1100), (0, 3)),   # odd width: every level at the end
    ("palette", (1200, 1100), (2, 3))])
def test_levels_computed_at_the_end_equal_gdal_with_alpha_or_palette(tmp_path, kind, size,
                                                                     levels):
    """Alpha: GDAL averages the bands weighted by the alpha mask; palette: NEAREST, each
    level from the one above (one band at a time from the mosaic would differ)."""
    paths = noise_input(tmp_path, "uint8" if kind == "palette" else "uint16", size,
                        kind == "palette")
    extra = {"add_alpha": True} if kind == "alpha" else {}
    plain, cog = tmp_path / "plain.tif", tmp_path / "cog.tif"
    run(paths, plain, chunk_size=256, **extra)
    run(paths, cog, chunk_size=256, cog=True, **extra)
    plan = make_plan(Options(inputs=paths, output=str(cog), cog=True, chunk_size=256, **extra))
    assert (pyramid.streamed(plan), len(pyramid.factors(plan))) == levels
    assert_cog_matches(cog, plain, tmp_path, "NEAREST" if kind == "palette" else "AVERAGE")


def test_the_partial_of_a_stopped_cog_run_holds_the_overviews_of_its_windows(sets, tmp_path):
    """The overviews are filled as windows are written, never by re-reading the mosaic."""
    paths = sets["even"]
    plain = tmp_path / "plain.tif"
    run(paths, plain, chunk_size=256)
    out = tmp_path / "cog.tif"
    seen = []
    with pytest.raises(Cancelled):
        engine.run(Options(inputs=[str(p) for p in paths], output=str(out), compression="lzw",
                           cog=True, chunk_size=256, checkpoint_seconds=0.0),
                   progress=lambda e: seen.append(e) if e.phase == "windows" else None,
                   cancel=lambda: len(seen) >= 7)
    assert journal(out)["done"] == 7  # window row 1 (7 windows a row) and window 1 of row 2
    partial = checkpoint.partial_path(str(out))
    got = levels(partial)
    want = gdal_overviews(plain, tmp_path, len(got))
    # The first window row, 256 px of the mosaic: 128 rows of level 1, 64 of level 2...
    for k, (a, b) in enumerate(zip(got, want)):
        rows = 256 >> (k + 1)
        np.testing.assert_array_equal(a[:, :rows], b[:, :rows])
    assert gdal.Open(partial).GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") is None


# A run killed (SIGKILL) after window argv[2]; ``{finish}`` is the option that streams levels.
KILL_WITH = """
import os, signal, sys
from streaming_mosaic.core import engine
from streaming_mosaic.core.options import Options

def progress(event):
    if event.phase == "windows" and event.done == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

engine.run(Options(inputs=sys.argv[3:], output=sys.argv[1], chunk_size=256, threads=2,
                   compression="lzw", checkpoint_seconds=0.0, {finish}=True), progress=progress)
"""


def killed_then_resumed(paths, tmp_path, finish, after_kill=None):
    """A clean run with ``finish``=True, and the same run SIGKILLed after 11 windows
    (``after_kill(out)`` then looks at what it left) and resumed. Checks that the resume
    kept windows and gave the clean run's pixels and overview levels; returns the output."""
    clean = tmp_path / "clean.tif"
    run(paths, clean, chunk_size=256, threads=2, **{finish: True})
    out = tmp_path / "out.tif"
    killed = subprocess.run([PYTHON, "-c", KILL_WITH.format(finish=finish), str(out), "11",
                             *paths], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert 0 < journal(out)["done"] < journal(out)["total"]
    if after_kill is not None:
        after_kill(out)
    result = run(paths, out, chunk_size=256, threads=2, resume=True, **{finish: True})
    assert result.resumed_from > 0
    np.testing.assert_array_equal(gdal.Open(str(out)).ReadAsArray(),
                                  gdal.Open(str(clean)).ReadAsArray())
    for a, b in zip(levels(out), levels(clean), strict=True):
        np.testing.assert_array_equal(a, b)
    return out


@pytest.mark.parametrize("grid", ["even", "mixed"])
def test_a_cog_run_killed_mid_way_resumes_to_the_same_cog(sets, tmp_path, grid):
    out = killed_then_resumed([str(p) for p in sets[grid]], tmp_path, "cog")
    assert validate_cog(str(out), full_check=True)[:2] == ([], [])
    assert not os.path.exists(checkpoint.partial_path(str(out)))


def test_a_cog_run_stays_within_memory_mb(tmp_path):
    """Peak RSS of a COG run within MEMORY_MB + baseline + 32 MB: the window buffers are
    freed before the COG driver's step, the overviews of a window are computed a strip
    at a time, and the plan counts that strip."""
    paths = tile_set(tmp_path, seed=5, grid=(2, 2), size=(2100, 2100), overlap=40, bands=3,
                     dtype="uint16", nodata=0)
    out = tmp_path / "cog.tif"
    peak_mb = cli_peak_mb(*paths, "-o", out, "--cog", "--memory-mb", "256", "--quiet")
    assert peak_mb <= 256 + INTERPRETER_BASELINE_MB + 32, peak_mb
    # The strips the COG's writer copies count in the budget: smaller windows than plain.
    # At 256 MB both take the window that still cuts this mosaic into 16 (memory.MIN_WINDOWS);
    # at 80 MB the memory decides (120 MB where the plan counts GDAL's freed cache blocks).
    budget_mb = 120 if FREED_CACHE_RESIDENT else 80
    cog_plan = make_plan(Options(inputs=[str(p) for p in paths], output=str(out), cog=True,
                                 memory_mb=budget_mb))
    plain_plan = make_plan(Options(inputs=[str(p) for p in paths], output=str(out),
                                   memory_mb=budget_mb))
    assert cog_plan.budget.sink > 0 and plain_plan.budget.sink == 0
    assert cog_plan.budget.estimated_peak <= budget_mb * 2**20 \
        < plain_plan.budget.estimated_peak + cog_plan.budget.sink
    assert cog_plan.budget.chunk < plain_plan.budget.chunk
    plain = tmp_path / "plain.tif"
    run(paths, plain)
    assert_cog_matches(out, plain, tmp_path)


def test_the_local_executor_frees_its_window_buffers_when_closed(sets, tmp_path):
    """The recycled window buffers must not outlive the windows (the COG step needs the
    memory; the thread pool's initializer kept the executor alive until a collection)."""
    from streaming_mosaic.core import executors
    plan = make_plan(Options(inputs=[str(p) for p in sets["even"]], output=str(tmp_path / "o.tif"),
                             chunk_size=256))
    executor = executors.make(plan)
    try:
        for index in range(len(plan.windows)):
            executor.submit(index)
            array, _moved = executor.next(lambda: False)
            assert array is not None
    finally:
        executor.close()
    assert executor.held is None and executor.buffers.empty()


@pytest.mark.parametrize("size", [(1025, 300), (2049, 1031), (1075, 2150), (1100, 1024)])
def test_the_level_sizes_and_count_are_the_cog_drivers(tmp_path, size):
    """Halved and rounded down while either side exceeds a block: 1025 px gives one level
    of 512 (GDAL's GeoTIFF overviews would make 513, then a second level)."""
    w, h = size
    data = (np.arange(w * h, dtype=np.uint32) % 251 + 1).astype(np.uint8).reshape(1, h, w)
    path = write_raster(tmp_path / "in.tif", data, (500000.0, 10, 0, 5000000.0, 0, -10))
    out = tmp_path / "cog.tif"
    run([path], out, cog=True)
    ref = tmp_path / "ref.tif"
    gdal.Translate(str(ref), str(path), format="COG",
                   creationOptions=["BLOCKSIZE=512", "RESAMPLING=AVERAGE"])
    ours = [a.shape for a in levels(out)]
    assert ours == [a.shape for a in levels(ref)]
    plan = make_plan(Options(inputs=[str(path)], output=str(out), cog=True))
    assert [(1, h, w) for w, h in pyramid.level_sizes(plan)] == ours
    assert_cog_matches(out, path, tmp_path)
