"""Windows cut into bands of rows, band k of every window on thread k (executors/local):
the same pixels as whole windows, and the cuts fall on the dominant input's block rows."""

import threading

import numpy as np
import pytest

from helpers import read, tile_set
from streaming_mosaic.core import engine
from streaming_mosaic.core.executors import local
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.windows import row_bands


@pytest.mark.parametrize("h,n,top,block,origin", [
    (2048, 2, 0, 0, 0), (2048, 2, 0, 256, -5267), (2048, 2, 2048, 256, 5267),
    (1536, 3, 512, 256, 100), (2048, 8, 0, 256, 7), (100, 8, 0, 0, 0), (3, 8, 0, 0, 0),
    (700, 2, 37, 1, 0), (517, 4, 1000, 64, 3)])
def test_bands_cover_the_window_and_cut_on_block_rows(h, n, top, block, origin):
    bands = row_bands(h, n, top, block, origin)
    assert len(bands) == min(n, h)
    assert bands[0][0] == 0 and bands[-1][1] == h
    assert all(r0 < r1 for r0, r1 in bands)
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    share = h / len(bands)
    for k, (cut, _) in enumerate(bands[1:], 1):
        even = round(k * share)
        if block > 1 and abs((top + even - origin + block // 2) % block - block // 2) * 4 <= share:
            assert (top + cut - origin) % block == 0, (k, cut)  # a block row within reach
        assert abs(cut - even) * 4 <= share or cut == even, (k, cut)


def test_a_cut_far_from_any_block_row_stays_even():
    # Blocks of 512 rows, bands of 256: only cuts near a block row move.
    assert row_bands(2048, 8, 0, 512, 0) == [(i * 256, i * 256 + 256) for i in range(8)]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bands")
    # Tiles 660 / 560 px apart with 256 px blocks: their block rows are offset.
    return [str(p) for p in tile_set(folder, seed=41, grid=(2, 3), size=(700, 600),
                                     overlap=40, bands=3, dtype="uint16", nodata=0)]


@pytest.mark.parametrize("method", ["last", "first", "mean", "max", "median"])
def test_banded_windows_give_the_pixels_of_whole_windows(tiles, tmp_path, method):
    outs = {}
    for threads in (1, 2, 3):  # 1: whole windows on a thread pool; 2 and 3: bands
        out = tmp_path / f"{method}-{threads}.tif"
        engine.run(Options(inputs=tiles, output=str(out), method=method, threads=threads,
                           chunk_size=512, compression="lzw"))
        outs[threads] = read(out)[0]
    assert np.array_equal(outs[1], outs[2]) and np.array_equal(outs[1], outs[3])
    assert (outs[1] != 0).any()


def test_band_k_of_every_window_runs_on_thread_k(tiles, tmp_path, monkeypatch):
    seen = []
    real = local.render_window

    def spy(plan, window, ctx, out):
        seen.append((window.index, window.y, threading.current_thread().name))
        return real(plan, window, ctx, out)

    monkeypatch.setattr(local, "render_window", spy)
    engine.run(Options(inputs=tiles, output=str(tmp_path / "o.tif"), threads=2,
                       chunk_size=512))
    by_window = {}
    for index, y, name in seen:
        by_window.setdefault(index, []).append((y, name))
    assert len(by_window) > 4
    for parts in by_window.values():
        parts.sort()
        assert [name.rsplit("_", 1)[1] for _, name in parts] == ["0", "1"]
