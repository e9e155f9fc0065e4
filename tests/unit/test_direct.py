"""METHOD first/last read straight into the output window (core/direct.py) give the pixels
of the general path (validity masks and accumulators), window by window."""

import numpy as np
import pytest

from helpers import tile_set
from streaming_mosaic.core import direct, options, render
from streaming_mosaic.core.plan import make_plan


def _windows(plan, monkeypatch, fast):
    original = direct.applies
    monkeypatch.setattr(direct, "applies",
                        lambda *a: fast and original(*a) and taken.append(1) is None)
    taken = []
    ctx = render.Context()
    arrays = [render.render_window(plan, w, ctx)[0].copy() for w in plan.windows]
    return arrays, len(taken)


@pytest.mark.parametrize("method", ["last", "first", "feather"])
@pytest.mark.parametrize("chunk", [256, 512])
def test_direct_path_matches_the_general_path(tmp_path, monkeypatch, method, chunk):
    # Overlapping tiles, holes, a gap no input covers (a window column with no input
    # and windows whose first part does not cover them).
    paths = tile_set(tmp_path, seed=21, grid=(3, 3), size=(300, 260), overlap=40, bands=3,
                     dtype="uint16", nodata=0, collar=4)
    (tmp_path / "far").mkdir()
    paths += tile_set(tmp_path / "far", seed=22, grid=(1, 1), size=(60, 50), bands=3,
                      dtype="uint16", nodata=0, origin=(500000.0 + 15000, 5000000.0))
    plan = make_plan(options.Options(inputs=paths, output=str(tmp_path / "o.tif"),
                                     method=method, chunk_size=chunk))
    ids = [plan.index.sources_for(w.index) for w in plan.windows]
    assert any(len(i) > 1 for i in ids) and any(not i for i in ids)
    # Feather: the windows one input reaches (others blend).
    expected = [len(i) <= 1 for i in ids] if method == "feather" else [True] * len(ids)
    assert [direct.applies(plan, i, np.empty(1)) for i in ids] == expected
    assert any(len(i) == 1 for i in ids)
    fast, used = _windows(plan, monkeypatch, True)
    slow, _ = _windows(plan, monkeypatch, False)
    assert used == sum(expected)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_direct_path_is_not_taken_when_holes_differ_from_the_output_nodata(tmp_path):
    paths = tile_set(tmp_path, seed=3, grid=(2, 1), size=(80, 60), overlap=10, bands=2,
                     dtype="uint16", nodata=0)
    plan = make_plan(options.Options(inputs=paths, output=str(tmp_path / "o.tif"),
                                     nodata_output=7))
    ids = plan.index.sources_for(0)
    assert ids and not direct.applies(plan, ids, np.empty(1))
