"""render_window is a pure function of (plan, window): a pickled plan renders the same
pixels in another process, in any order, as the engine wrote them (the Dask-ready seam)."""

import concurrent.futures
import multiprocessing
import pickle

import numpy as np

from helpers import read, render_pickled, tile_set
from streaming_mosaic.core import engine, options
from streaming_mosaic.core.plan import make_plan


def test_windows_render_identically_from_a_pickled_plan_in_other_processes(tmp_path):
    paths = tile_set(tmp_path, seed=9, grid=(2, 3), size=(300, 260), overlap=40, bands=2,
                     dtype="uint16")
    opts = options.Options(inputs=paths, output=str(tmp_path / "out.tif"), method="feather",
                           chunk_size=256, feather_distance=20)
    engine.run(opts)
    mosaic = read(tmp_path / "out.tif")[0]
    plan = make_plan(opts)
    blob = pickle.dumps(plan)
    order = list(range(len(plan.windows)))[::-1]  # any order
    assert len(order) >= 4
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(render_pickled, [blob] * len(order), order))
    covered = np.zeros(mosaic.shape[1:], bool)
    for (x0, y0, x1, y1), array in results:
        np.testing.assert_array_equal(array, mosaic[:, y0:y1, x0:x1])
        covered[y0:y1, x0:x1] = True
    assert covered.all()
