"""What keeps thousands of small inputs cheap: the overlap index of the direct path and
reopening each input with the driver that described it."""

import random

import numpy as np
import pytest
from osgeo import gdal

from helpers import read, tile_set, vrt_reference
from streaming_mosaic.core import direct, engine
from streaming_mosaic.core.errors import InputError
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan
from streaming_mosaic.core.readers import Handles


@pytest.mark.parametrize("seed", range(5))
def test_the_overlap_index_answers_as_comparing_every_earlier_part(seed):
    rng = random.Random(seed)
    done, earlier = direct._Parts(), []
    for _ in range(400):
        x0, y0 = rng.randrange(0, 2000), rng.randrange(0, 2000)
        w, h = rng.choice([1, 7, 64, 255, 256, 257, 700]), rng.choice([1, 64, 256, 513])
        part = (x0, y0, min(x0 + w, 2048), min(y0 + h, 2048))
        want = any(direct._overlap(part, q) for q in earlier)
        assert done.overlaps(part) is want
        if rng.random() < 0.5:
            done.add(part)
            earlier.append(part)


def test_many_small_tiles_on_cell_edges_give_gdal_s_mosaic(tmp_path):
    # 64 px tiles with 8 px overlaps, so parts straddle the index's cells.
    paths = tile_set(tmp_path, seed=51, grid=(9, 8), size=(72, 72), overlap=8, bands=3,
                     dtype="uint16", nodata=0, collar=3)
    out = tmp_path / "mosaic.tif"
    engine.run(Options(inputs=[str(p) for p in paths], output=str(out), chunk_size=512,
                       threads=2))
    got, want = read(out), read(vrt_reference(paths, tmp_path / "ref.tif"))
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1:] == want[1:]


def test_inputs_are_reopened_with_the_driver_that_described_them(tmp_path):
    paths = tile_set(tmp_path, seed=52, grid=(2, 1), size=(40, 30), bands=1, dtype="uint8")
    vrt = str(tmp_path / "second.vrt")
    gdal.BuildVRT(vrt, [str(paths[1])])
    plan = make_plan(Options(inputs=[str(paths[0]), vrt], output=str(tmp_path / "o.tif")))
    assert [s.driver for s in plan.specs] == ["GTiff", "VRT"]
    handles = Handles()
    assert [handles.get(s).GetDriver().ShortName for s in plan.specs] == ["GTiff", "VRT"]
    # A file replaced by another format after the plan is refused in one line.
    (tmp_path / "replaced.tif").write_bytes(open(vrt, "rb").read())
    spec = plan.specs[0].__class__(**dict(vars(plan.specs[0]), index=9,
                                          path=str(tmp_path / "replaced.tif")))
    with pytest.raises(InputError, match="replaced.tif: cannot be opened"):
        handles.get(spec)
