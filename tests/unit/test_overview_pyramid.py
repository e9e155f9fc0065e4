"""OVERVIEWS=true on a plain GeoTIFF with levels streamed from the windows (core/overviews.py).

Every output is compared pixel by pixel with GDAL's own BuildOverviews (AVERAGE)
on a copy of the same mosaic written without overviews.
"""

import os

import numpy as np
import pytest
from osgeo import gdal
from test_cog_pyramid import GRIDS, gdal_overviews, killed_then_resumed, levels, run, tile_sets

from helpers import journal
from streaming_mosaic.core import checkpoint, engine, overviews
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return tile_sets(tmp_path_factory)


def assert_overviews_match(out, plain, folder):
    got_ds = gdal.Open(str(out))
    np.testing.assert_array_equal(got_ds.ReadAsArray(), gdal.Open(str(plain)).ReadAsArray())
    assert got_ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "LZW"
    got = levels(out)
    assert got
    want = gdal_overviews(plain, folder, len(got))
    assert [a.shape for a in got] == [b.shape for b in want]
    for k, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), f"level {k + 1}: {int((a != b).sum())} pixels differ"


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("chunk", [256, 512])
def test_overviews_equal_gdal_average_of_the_plain_mosaic(sets, tmp_path, grid, chunk):
    paths = sets[grid]
    plain = tmp_path / "plain.tif"
    run(paths, plain, chunk_size=chunk)
    out = tmp_path / "ovr.tif"
    run(paths, out, overviews=True, chunk_size=chunk, threads=2)
    assert_overviews_match(out, plain, tmp_path)
    assert not os.path.exists(overviews.side_path(checkpoint.partial_path(str(out))))


def test_which_levels_are_streamed(sets, tmp_path):
    def plan(grid):
        return make_plan(Options(inputs=[str(p) for p in sets[grid]], output="/tmp/x.tif",
                                 overviews=True, chunk_size=256))
    assert [overviews.streamed(plan(g)) for g in ("even", "mixed", "odd")] == [3, 2, 0]


def test_the_overviews_come_from_the_windows_not_from_the_finished_mosaic(sets, tmp_path):
    """A stopped run's side file holds the levels of its windows; the full resolution is
    then blanked in the partial and the run resumed: the overviews of those windows are
    still the mosaic's, so they were never computed from the partial's pixels."""
    paths = sets["even"]
    plain = tmp_path / "plain.tif"
    run(paths, plain, chunk_size=256)
    out = tmp_path / "ovr.tif"
    seen = []
    with pytest.raises(Cancelled):
        engine.run(Options(inputs=[str(p) for p in paths], output=str(out), compression="lzw",
                           overviews=True, chunk_size=256, checkpoint_seconds=0.0),
                   progress=lambda e: seen.append(e) if e.phase == "windows" else None,
                   cancel=lambda: len(seen) >= 14)
    assert journal(out)["done"] == 14  # the first two window rows: 512 rows of the mosaic
    partial = checkpoint.partial_path(str(out))
    want = gdal_overviews(plain, tmp_path, 3)
    side = levels(overviews.side_path(partial))
    side.insert(0, gdal.Open(overviews.side_path(partial)).ReadAsArray())
    for k, (a, b) in enumerate(zip(side, want)):
        rows = 512 >> (k + 1)
        np.testing.assert_array_equal(a[:, :rows], b[:, :rows])
    ds = gdal.Open(partial, gdal.GA_Update)
    ds.WriteRaster(0, 0, ds.RasterXSize, 512, bytes(ds.RasterXSize * 512 * 3 * 2))
    ds = None
    run(paths, out, overviews=True, chunk_size=256, resume=True)
    got = levels(out)
    for k, (a, b) in enumerate(zip(got, want)):
        rows = 512 >> (k + 1)
        np.testing.assert_array_equal(a[:, :rows], b[:, :rows])
    assert not gdal.Open(str(out)).ReadAsArray()[:, :512].any()


@pytest.mark.parametrize("grid", ["even", "mixed"])
def test_a_run_with_overviews_killed_mid_way_resumes_to_the_same_file(sets, tmp_path, grid):
    def side_file_kept(out):
        assert os.path.exists(overviews.side_path(checkpoint.partial_path(str(out))))

    out = killed_then_resumed([str(p) for p in sets[grid]], tmp_path, "overviews",
                              side_file_kept)
    assert not os.path.exists(checkpoint.partial_path(str(out)))
    assert not os.path.exists(overviews.side_path(checkpoint.partial_path(str(out))))


@pytest.mark.parametrize("kind,size", [("alpha", (2400, 2200)), ("palette", (1200, 1100))])
def test_streamed_overviews_equal_gdal_with_alpha_or_palette(tmp_path, kind, size):
    """Alpha: GDAL weights the bands by the alpha mask; palette: NEAREST."""
    from test_cog_pyramid import noise_input
    paths = noise_input(tmp_path, "uint8" if kind == "palette" else "uint16", size,
                        kind == "palette")
    extra = {"add_alpha": True} if kind == "alpha" else {}
    plain, out = tmp_path / "plain.tif", tmp_path / "ovr.tif"
    run(paths, plain, chunk_size=256, **extra)
    run(paths, out, chunk_size=256, overviews=True, **extra)
    plan = make_plan(Options(inputs=paths, output=str(out), overviews=True, chunk_size=256,
                             **extra))
    assert 0 < overviews.streamed(plan) < len(overviews.factors(plan))
    got, want = levels(out), gdal_overviews(plain, tmp_path, len(levels(out)),
                                            "NEAREST" if kind == "palette" else "AVERAGE")
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(a, b), f"level {k + 1}: {int((a != b).sum())} pixels differ"
