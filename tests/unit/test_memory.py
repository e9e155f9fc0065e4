"""Window sizing (core/memory.py): a small mosaic keeps several windows per thread, so
reading and compressing overlap; the pixels do not depend on the window chosen."""

import math

import numpy as np
import pytest

from helpers import read, tile_set, vrt_reference
from streaming_mosaic.core import engine
from streaming_mosaic.core.composite import RULES
from streaming_mosaic.core.memory import MAX_CHUNK, MIN_WINDOWS, WINDOWS_PER_THREAD, plan_budget
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan


def _budget(size, memory_mb=256, threads=2, block=512, chunk=0, direct=True):
    return plan_budget(memory_mb, threads, block, 3, RULES["last"], "uint16", "uint16",
                       size, chunk=chunk, direct=direct)


def _windows(size, side):
    return math.ceil(size[0] / side) * math.ceil(size[1] / side)


@pytest.mark.parametrize("size", [(4001, 4001), (6000, 2500), (3000, 9000)])
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_a_small_mosaic_is_cut_into_enough_windows_for_every_thread(size, threads):
    budget = _budget(size, threads=threads)
    want = max(MIN_WINDOWS, WINDOWS_PER_THREAD * threads)
    assert budget.fits and budget.chunk % 512 == 0
    assert _windows(size, budget.chunk) >= want
    # ... and the window is the largest that does: one block more gives too few.
    bigger = budget.chunk + 512
    assert bigger > MAX_CHUNK or _windows(size, bigger) < want


def test_a_large_mosaic_keeps_the_largest_window_the_budget_allows():
    assert _budget((16001, 16001)).chunk == MAX_CHUNK
    # A tight budget still decides below the pipelining cap.
    tight = _budget((16001, 16001), memory_mb=64)
    assert tight.chunk < MAX_CHUNK and tight.estimated_peak <= tight.total


def test_a_mosaic_too_small_for_enough_windows_gets_one_block_windows():
    assert _budget((900, 700)).chunk == 512
    assert _budget((300, 200), block=256).chunk == 256


def test_a_chunk_asked_for_is_kept():
    assert _budget((4001, 4001), chunk=2048).chunk == 2048


def test_the_automatic_window_gives_the_pixels_of_one_large_window(tmp_path):
    paths = tile_set(tmp_path, seed=31, grid=(2, 2), size=(1150, 1100), overlap=60, bands=3,
                     dtype="uint16", nodata=0, collar=5)
    base = dict(inputs=[str(p) for p in paths], threads=2,
                creation_options="BLOCKXSIZE=256|BLOCKYSIZE=256")
    auto = make_plan(Options(output=str(tmp_path / "auto.tif"), **base))
    assert 256 < auto.budget.chunk < 2048 and len(auto.windows) >= MIN_WINDOWS
    engine.run(auto.options)
    engine.run(Options(output=str(tmp_path / "one.tif"), chunk_size=2048, **base))
    ref = vrt_reference(paths, tmp_path / "ref.tif")
    got, one, want = read(tmp_path / "auto.tif"), read(tmp_path / "one.tif"), read(ref)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(one[0], want[0])
    assert got[1:] == want[1:]
