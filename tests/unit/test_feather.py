"""METHOD=feather: exact single-input pixels, bounded smooth seams, window independence, weights."""

import itertools
import math

import numpy as np
import pytest

from helpers import read, run_cli, smooth_field, write_raster
from streaming_mosaic.core import feather

RES = 10.0
ORIGIN = (500000.0, 5000000.0)
MANY_WINDOWS = ("--chunk", "48", "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16")


def write_at(path, data, x, y, nodata):
    return write_raster(path, data, (ORIGIN[0] + x * RES, RES, 0, ORIGIN[1] - y * RES, 0, -RES),
                        nodata=nodata)


def random_tiles(folder, seed, dtype, bands, nodata, n=4, extent=(260, 220)):
    """Overlapping tiles with collars and holes (some in one band only); returns
    (paths, data (n, bands, H, W) float64, valid (n, bands, H, W))."""
    rng = np.random.default_rng(seed)
    width, height = extent
    data = np.zeros((n, bands, height, width))
    valid = np.zeros((n, bands, height, width), bool)
    paths = []
    for i in range(n):
        w, h = int(rng.integers(width * 0.5, width * 0.7)), int(rng.integers(height * 0.5,
                                                                               height * 0.7))
        x, y = [(0, 0), (width - w, height - h)][i] if i < 2 else (
            int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)))
        tile = np.stack([smooth_field(rng, h, w, 10 + 40 * i, 100 + 40 * i, dtype)
                         for _ in range(bands)])
        ok = np.ones(tile.shape, bool)
        ok[:, :, -3:] = False
        for _ in range(4):
            b = int(rng.integers(0, bands + 1))
            sel = slice(None) if b == bands else slice(b, b + 1)
            r, c = int(rng.integers(0, h - 25)), int(rng.integers(0, w - 25))
            ok[sel, r:r + int(rng.integers(5, 25)), c:c + int(rng.integers(5, 25))] = False
        tile[~ok] = nodata
        paths.append(write_at(str(folder / f"f{seed}_{i}.tif"), tile, x, y, nodata))
        data[i, :, y:y + h, x:x + w] = tile
        valid[i, :, y:y + h, x:x + w] = ok
    return paths, data, valid


def brute_edge_distance(footprint, limit):
    """Distance from each footprint pixel centre to the nearest non-footprint pixel centre."""
    rows, cols = footprint.shape
    outside = [(r, c) for r, c in itertools.product(range(rows), range(cols))
               if not footprint[r, c]]
    out = np.zeros((rows, cols))
    for r, c in itertools.product(range(rows), range(cols)):
        if footprint[r, c]:
            near = min((math.hypot(r - rr, c - cc) for rr, cc in outside), default=math.inf)
            out[r, c] = min(near, limit)
    return out


def feather_reference(data, valid, distance):
    """Blend from scipy's exact Euclidean distance transform of each input's footprint
    (pixels where any band is valid); the grid's border is not an edge."""
    ndimage = pytest.importorskip("scipy.ndimage")
    weights = []
    for v in valid:
        footprint = v.any(axis=0)
        dist = ndimage.distance_transform_edt(footprint) if not footprint.all() else \
            np.full(footprint.shape, np.inf)
        weights.append(np.minimum(dist, distance) / distance)
    w = np.where(valid, np.array(weights)[:, None], 0.0)
    count = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        blend = (w * np.where(valid, data, 0)).sum(axis=0) / w.sum(axis=0)
    single = np.where(valid, data, 0).sum(axis=0)  # the one valid value where count == 1
    return np.where(count == 1, single, blend), count


@pytest.mark.parametrize("dtype,bands,nodata,distance", [("float32", 1, -9999.0, 12),
                                                         ("uint16", 3, 0, 25),
                                                         ("uint8", 2, 0, 6.5)])
def test_feather_matches_distance_transform_reference(tmp_path, dtype, bands, nodata, distance):
    paths, data, valid = random_tiles(tmp_path, 21, dtype, bands, nodata)
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--method", "feather", "--feather-distance", distance,
            *MANY_WINDOWS, "--quiet", check=True)
    got, _gt, nd = read(out)
    assert got.dtype == np.dtype(dtype) and nd == nodata
    want, count = feather_reference(data, valid, distance)
    # (a) wherever one input alone is valid, the output is exactly that input.
    assert (count == 1).any() and (count >= 3).any()
    np.testing.assert_array_equal(got[count == 1], data.sum(axis=0, where=valid)[count == 1])
    assert (got[count == 0] == nodata).all()
    # In overlaps: a convex blend of the valid values, close to the reference.
    lo = np.where(valid, data, np.inf).min(axis=0)
    hi = np.where(valid, data, -np.inf).max(axis=0)
    many = count >= 2
    assert (got[many] >= np.floor(lo[many])).all() and (got[many] <= np.ceil(hi[many])).all()
    blended = many & (hi - lo > 20)
    assert (np.abs(got[blended] - lo[blended]) > 2).any()  # not a plain first/last
    assert (np.abs(got[blended] - hi[blended]) > 2).any()
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got[many], want[many], rtol=1e-5)
    else:
        # Off by one only where the exact blend is a half (float32 weights such as 1/25).
        diff = np.abs(got[many].astype(np.float64) - np.rint(want[many]))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
        assert (np.abs(want[many][diff > 0] % 1 - 0.5) < 1e-4).all()


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_feather_seam_between_constant_tiles_is_monotonic_and_bounded(tmp_path, dtype):
    distance = 16
    a = write_at(str(tmp_path / "a.tif"), np.full((100, 200), 100, dtype), 0, 0, 0)
    b = write_at(str(tmp_path / "b.tif"), np.full((100, 200), 200, dtype), 120, 0, 0)
    out = tmp_path / "out.tif"
    run_cli(a, b, "-o", out, "--method", "feather", "--feather-distance", distance,
            *MANY_WINDOWS, "--quiet", check=True)
    got = read(out)[0][0].astype(np.float64)
    assert got.shape == (100, 320)
    assert (got == got[0]).all()  # the top and bottom of the grid are not edges
    row = got[0]
    assert (np.diff(row) >= 0).all() and row.min() == 100 and row.max() == 200
    assert (row[:120] == 100).all() and (row[200:] == 200).all()
    assert len(np.unique(row[120:200])) > 10  # a gradual blend, not a step
    # Independent closed form: weights grow 1/D per pixel from each tile's inner edge.
    cols = np.arange(120, 200)
    wa = np.minimum(200 - cols, distance) / distance
    wb = np.minimum(cols - 119, distance) / distance
    want = (100 * wa + 200 * wb) / (wa + wb)
    if dtype == "uint8":
        np.testing.assert_array_equal(row[120:200], np.rint(want))
    else:
        np.testing.assert_allclose(row[120:200], want, rtol=1e-6)


@pytest.mark.parametrize("distance", [20, 70])  # 70: the halo is wider than a 48 px window
def test_feather_does_not_depend_on_windows_or_threads(tmp_path, distance):
    paths, _data, _valid = random_tiles(tmp_path, 33, "int16", 2, -9999)
    # Feather renders on half the THREADS (GDAL compresses on all): 4 gives 2 renderers.
    runs = {"w256-t1": ("--chunk", "256", "--threads", "1"),
            "w256-t4": ("--chunk", "256", "--threads", "4"),
            "w48-t4": MANY_WINDOWS + ("--threads", "4"),
            "w48-t1": MANY_WINDOWS + ("--threads", "1")}
    results = {}
    for name, args in runs.items():
        out = tmp_path / f"{name}.tif"
        run_cli(*paths, "-o", out, "--method", "feather", "--feather-distance", distance,
                *args, "--quiet", check=True)
        results[name] = read(out)
    first = results["w256-t1"]
    for name, (got, gt, nd) in results.items():
        assert (gt, nd) == first[1:], name
        np.testing.assert_array_equal(got, first[0], err_msg=name)


FOOTPRINTS = {
    "blobs": np.random.default_rng(1).random((17, 23)) > 0.15,
    "sparse": np.random.default_rng(2).random((19, 16)) > 0.6,
    "single-hole": np.pad(np.zeros((1, 1), bool), ((6, 12), (9, 4)), constant_values=True),
    "row": np.random.default_rng(3).random((1, 40)) > 0.2,
    "column": np.random.default_rng(4).random((33, 1)) > 0.2,
    "all-valid": np.ones((9, 11), bool),
    # One filled rectangle (an input without holes) takes a shortcut: every side placement.
    "rectangle-inside": np.pad(np.ones((9, 13), bool), ((4, 6), (3, 5))),
    "rectangle-corner": np.pad(np.ones((12, 8), bool), ((0, 7), (9, 0))),
    "rectangle-band": np.pad(np.ones((5, 20), bool), ((8, 3), (0, 0))),
    "rectangle-strip": np.pad(np.ones((30, 1), bool), ((0, 0), (4, 2))),
    "rectangle-pixel": np.pad(np.ones((1, 1), bool), ((3, 2), (2, 5))),
    "none-valid": np.zeros((5, 7), bool),
    # A rectangle with holes (the bench's tiles: a collar and a few small holes): the
    # distance is the smaller of the rectangle's and the holes' own.
    "rectangle-holes": np.pad(np.ones((30, 26), bool), ((2, 4), (5, 1))),
}
FOOTPRINTS["rectangle-holes"][5:7, 9:12] = False
FOOTPRINTS["rectangle-holes"][30:33, 27:31] = False  # on the rectangle's corner
FOOTPRINTS["rectangle-holes"][20, 5] = False  # on its left side


@pytest.mark.parametrize("name", FOOTPRINTS)
@pytest.mark.parametrize("limit", [1, 1.5, 2, 3.7, 6, 40])
def test_edge_distance_matches_brute_force(name, limit):
    footprint = FOOTPRINTS[name]
    got = feather.edge_distance(footprint, limit)
    assert got.shape == footprint.shape
    np.testing.assert_allclose(got, brute_edge_distance(footprint, limit), rtol=1e-6, atol=1e-6)
    weights = feather.weights(footprint, limit)
    np.testing.assert_allclose(weights, brute_edge_distance(footprint, limit) / limit, rtol=1e-6)
    assert (weights[~footprint] == 0).all()
    assert (weights[footprint] > 0).all() and (weights <= 1).all()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "float32"])
def test_exact_fold_types_give_a_single_value_back(dtype):
    """Where one input alone is valid, the blend (v * w) / w must be v exactly: numpy
    checks the claim of feather.exact_fold over each type's extremes and random values."""
    assert feather.exact_fold(dtype)
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        info = np.finfo(dtype)
        v = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-30, 30, 20000),
                            [info.max, info.min, info.tiny]]).astype(dtype)
    else:
        info = np.iinfo(dtype)
        v = np.concatenate([rng.integers(info.min, info.max, 20000, endpoint=True),
                            [info.min, info.max]]).astype(dtype)
    w = np.concatenate([rng.random(v.size - 3), [1 / 3, 1 / 32, 1]]).astype(np.float32)
    w[w == 0] = 1
    product = np.multiply(v, w, dtype=np.float64)
    np.testing.assert_array_equal(product / w, v.astype(np.float64))


@pytest.mark.parametrize("dtype", ["int32", "uint32", "float64"])
def test_wide_types_are_not_exact_folds(dtype):
    """Wider values times a float32 weight round in float64, so (v * w) / w misses v for
    some of them: these types keep the count and the single value instead."""
    assert not feather.exact_fold(dtype)
    rng = np.random.default_rng(6)
    if dtype == "float64":
        v = rng.uniform(1, 2, 10000)
    else:
        v = rng.integers(2 ** 30, 2 ** 31 - 1, 10000).astype(dtype)
    w = rng.uniform(0.01, 1, 10000).astype(np.float32)
    assert (np.multiply(v, w, dtype=np.float64) / w != v).any()


@pytest.mark.parametrize("dtype,low,high,nodata", [("int32", 2 ** 30, 2 ** 31 - 100, -1),
                                                   ("float64", 1e15 / 3, 3e15 / 7, np.nan),
                                                   ("float32", 1e30 / 3, 3e30 / 7, np.nan)])
def test_feather_single_values_exact_and_blend_close(tmp_path, dtype, low, high, nodata):
    """Wide types (count and single value kept) and a float32 with NaN nodata (NaN * 0
    must not reach the sums)."""
    rng = np.random.default_rng(8)
    width, height, distance = 150, 70, 10
    data = np.zeros((2, 2, height, width))
    valid = np.zeros((2, 2, height, width), bool)
    paths = []
    for i, x in enumerate((0, 60)):
        tile = rng.uniform(low, high, (2, height, 90)).astype(dtype).astype(np.float64)
        ok = rng.random(tile.shape) > 0.05
        tile[~ok] = nodata
        paths.append(write_at(str(tmp_path / f"w{i}.tif"), tile.astype(dtype), x, 0, nodata))
        data[i, :, :, x:x + 90] = tile
        valid[i, :, :, x:x + 90] = ok
    out = tmp_path / "out.tif"
    run_cli(*paths, "-o", out, "--method", "feather", "--feather-distance", distance,
            *MANY_WINDOWS, "--quiet", check=True)
    got = read(out)[0].astype(np.float64)
    want, count = feather_reference(data, valid, distance)
    assert (count == 1).sum() > 1000 and (count == 2).sum() > 1000
    # Values of more than 29 significant bits come back exactly where one input is valid.
    np.testing.assert_array_equal(got[count == 1], data.sum(axis=0, where=valid)[count == 1])
    # Blends: the weights are float32 (relative error up to 6e-8 against the reference's
    # float64), so a blend may move by that much of the values (plus rounding to integer).
    many = count == 2
    np.testing.assert_allclose(got[many], want[many], rtol=1e-7, atol=1)


def test_feather_plan_renders_on_half_the_threads_and_compresses_on_all(tmp_path):
    import streaming_mosaic
    paths = random_tiles(tmp_path, 3, "uint8", 1, 0, n=2)[0]
    plan = streaming_mosaic.plan(paths, method="feather", threads=4)
    assert plan.threads == 2 and plan.creation_options["NUM_THREADS"] == "4"
    assert "2 thread(s), compressing on 4" in "\n".join(streaming_mosaic.core.plan.summary_lines(plan))
    for other in (dict(method="mean"), dict(method="feather", compression="none")):
        plan = streaming_mosaic.plan(paths, threads=4, **other)
        assert plan.threads == 4 and plan.creation_options["NUM_THREADS"] == "4", other
