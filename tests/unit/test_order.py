"""ORDER: shuffled inputs give the result of the sorted list; an input without a date is refused."""

import numpy as np
import pytest
from osgeo import gdal

import streaming_mosaic
from helpers import read, run_cli, write_raster
from streaming_mosaic.core.order import date_from_metadata, date_from_name

ORIGIN = (500000.0, 5000000.0)


def _tiles(tmp_path):
    """Overlapping tiles differing in date (metadata or name), name and pixel size.

    Returned in the sorted order for each ORDER, as {order: [paths]}."""
    rng = np.random.default_rng(5)
    specs = [  # name, date metadata (key, value) or None, pixel size
        ("d_S2A_MSIL2A_20210305T101021_N0214.tif", None, 10.0),
        ("b_scene.tif", ("TIFFTAG_DATETIME", "2020:07:01 10:00:00"), 20.0),
        ("a_LC08_L1TP_044034_20190110_20200113_01_T1.tif", None, 10.0),
        ("c_scene.tif", ("ACQUISITIONDATETIME", "2020-01-15T09:30:00Z"), 5.0),
        ("e_2020-12-24.tif", None, 20.0),
    ]
    paths = []
    for i, (name, meta, res) in enumerate(specs):
        size = int(200 / res)
        data = rng.integers(1, 60000, (1, size, size), dtype=np.uint16)
        x = ORIGIN[0] + 13 * i * 10
        path = write_raster(tmp_path / name, data, (x, res, 0, ORIGIN[1], 0, -res), nodata=0)
        if meta:
            ds = gdal.Open(path, gdal.GA_Update)
            ds.SetMetadataItem(*meta)
            ds = None
        paths.append(path)
    by = {
        "date": [paths[k] for k in (2, 3, 1, 4, 0)],
        "name": sorted(paths, key=lambda p: p.rsplit("/", 1)[1]),
        # coarsest first, ties in the given order (tiles of one size do not overlap)
        "resolution": [paths[k] for k in (1, 4, 0, 2, 3)],
    }
    return paths, by


def test_date_parsing():
    assert date_from_metadata({"TIFFTAG_DATETIME": "2020:07:01 10:00:00"}).month == 7
    assert date_from_metadata({"DATE_ACQUIRED": "2019-01-10"}).day == 10
    assert date_from_metadata({"PRODUCT_START_TIME": "2021-03-05T10:10:21.024Z"}).hour == 10
    assert date_from_name("LC08_L1TP_044034_20190110_20200113_01_T1.tif").year == 2019
    assert date_from_name("x_20201399_20201224.tif").day == 24  # 13th month skipped
    assert date_from_name("tile_123456789.tif") is None


@pytest.mark.parametrize("order", ["date", "name", "resolution"])
def test_shuffled_inputs_sort_like_the_sorted_list(tmp_path, order):
    paths, by = _tiles(tmp_path)
    want_out = tmp_path / "sorted.tif"
    run_cli(*by[order], "-o", want_out, "--quiet", check=True)
    want = read(want_out)[0]
    rng = np.random.default_rng(1)
    for k in range(2):
        shuffled = list(paths)
        rng.shuffle(shuffled)
        out = tmp_path / f"{order}{k}.tif"
        run_cli(*shuffled, "-o", out, "--order", order, "--quiet", check=True)
        np.testing.assert_array_equal(read(out)[0], want)
    plan = streaming_mosaic.plan(paths, order=order)  # ties (same size) keep this order
    assert [s.path for s in plan.sources] == by[order]
    assert [s.index for s in plan.sources] == list(range(len(paths)))


def test_order_input_keeps_the_given_order(tmp_path):
    paths, _ = _tiles(tmp_path)
    plan = streaming_mosaic.plan(paths[::-1], order="input")
    assert [s.path for s in plan.sources] == paths[::-1]


def test_missing_date_refused(tmp_path):
    paths, _ = _tiles(tmp_path)
    undated = write_raster(tmp_path / "no_date_here.tif", np.ones((1, 5, 5), np.uint16),
                           (ORIGIN[0], 10, 0, ORIGIN[1], 0, -10), nodata=0)
    out = tmp_path / "o.tif"
    proc = run_cli(*paths, undated, "-o", out, "--order", "date")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "no_date_here.tif" in line and "date" in line
    assert not out.exists()
    with pytest.raises(streaming_mosaic.InputError, match="no_date_here"):
        streaming_mosaic.plan([undated], order="date")
