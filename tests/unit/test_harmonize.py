"""HARMONIZE: gains (and offsets) fitted on the overlaps give back one seamless field.

The data is one smooth field cut into overlapping uint16 tiles, each tile and band
with a known gain and offset (tools/harmony_data.py). The mosaic is judged against
the field after removing one global linear map per band, and by the step across
the tiles' edges compared with the field's own pixel-to-pixel change.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from harmony_data import biased_tiles, relative_rmse, seam_ratio

from helpers import read, write_raster
from streaming_mosaic.core import harmonize, lsq
from streaming_mosaic.core.engine import run
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options
from streaming_mosaic.core.plan import make_plan
from streaming_mosaic.core.report import INTERPRETER_BASELINE_MB

OTB = "/usr/bin/otbcli_Mosaic"


def mosaic(paths, out, **kw):
    run(Options(inputs=list(paths), output=str(out), **kw))
    return read(out)[0]


@pytest.fixture(scope="module")
def gain_tiles(tmp_path_factory):
    return biased_tiles(tmp_path_factory.mktemp("gain"), seed=3, offsets=0)


@pytest.fixture(scope="module")
def linear_tiles(tmp_path_factory):
    return biased_tiles(tmp_path_factory.mktemp("linear"), seed=4)


@pytest.mark.parametrize("method", ["last", "feather", "median", "mean", "max"])
def test_gain_gives_the_field_back_without_seams(gain_tiles, tmp_path, method):
    field, rects = gain_tiles["field"], gain_tiles["rects"]
    fixed = mosaic(gain_tiles["paths"], tmp_path / "h.tif", method=method, harmonize="gain")
    plain = mosaic(gain_tiles["paths"], tmp_path / "n.tif", method=method)
    assert max(relative_rmse(fixed, field)) <= 0.005
    assert min(relative_rmse(plain, field)) > 0.05
    assert seam_ratio(fixed, field, rects) <= (1.2 if method == "feather" else 1.5)
    if method != "feather":  # feathering spreads the step: the edge alone hides it
        assert seam_ratio(plain, field, rects) > 3


@pytest.mark.parametrize("method", ["last", "feather", "percentile", "mode", "first"])
def test_linear_gives_the_field_back_without_seams(linear_tiles, tmp_path, method):
    field, rects = linear_tiles["field"], linear_tiles["rects"]
    fixed = mosaic(linear_tiles["paths"], tmp_path / "h.tif", method=method,
                   harmonize="linear")
    plain = mosaic(linear_tiles["paths"], tmp_path / "n.tif", method=method)
    gain_only = mosaic(linear_tiles["paths"], tmp_path / "g.tif", method=method,
                       harmonize="gain")
    assert max(relative_rmse(fixed, field)) <= 0.01
    assert min(relative_rmse(plain, field)) > 0.1
    assert min(relative_rmse(gain_only, field)) > 0.02  # offsets need the linear model
    assert seam_ratio(fixed, field, rects) <= (1.2 if method == "feather" else 1.5)


def test_fitted_coefficients_are_the_true_ones_up_to_one_linear_map(linear_tiles):
    plan = make_plan(Options(inputs=linear_tiles["paths"], harmonize="linear"))
    harmony = harmonize.fit(plan)
    true_g, true_o = linear_tiles["gains"], linear_tiles["offsets"]
    # corrected = g x + o with x = G f + O  =>  g G is one constant a per band.
    a = harmony.gains * true_g
    assert np.allclose(a, a.mean(axis=0), rtol=2e-3)
    c = harmony.gains * true_o + harmony.offsets
    assert np.allclose(c, c.mean(axis=0), atol=20)
    assert np.allclose(harmony.gains.mean(axis=0), 1) and np.allclose(
        harmony.offsets.mean(axis=0), 0, atol=1e-6)


def test_same_coefficients_and_pixels_for_any_threads_and_chunk(linear_tiles, tmp_path):
    outs = []
    for threads, chunk in ((1, 0), (2, 64), (3, 48)):
        outs.append(mosaic(linear_tiles["paths"], tmp_path / f"{threads}.tif", threads=threads,
                           chunk_size=chunk, harmonize="linear", method="feather"))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def otb_mosaic(paths, out, shape):
    subprocess.run([OTB, "-il", *map(str, paths), "-out", str(out), "uint16",
                    "-comp.feather", "large", "-harmo.method", "band", "-harmo.cost", "rmse",
                    "-nodata", "0", "-ram", "256"], check=True, capture_output=True)
    from osgeo import gdal
    h, w = shape
    # OTB pads its output grid: cut it to the mosaic's extent.
    ds = gdal.Translate(str(out) + ".cut.tif", str(out),
                        projWin=(500000, 5000000, 500000 + w * 10, 5000000 - h * 10))
    return ds.ReadAsArray()


@pytest.mark.skipif(not os.path.exists(OTB), reason="Orfeo ToolBox (otb-bin) not installed")
@pytest.mark.parametrize("data", ["gain_tiles", "linear_tiles"])
def test_at_least_as_accurate_and_seamless_as_orfeo_toolbox(request, tmp_path, data):
    tiles = request.getfixturevalue(data)
    field, rects = tiles["field"], tiles["rects"]
    kind = "gain" if data == "gain_tiles" else "linear"
    ours = mosaic(tiles["paths"], tmp_path / "ours.tif", method="feather", harmonize=kind)
    otb = otb_mosaic(tiles["paths"], tmp_path / "otb.tif", field.shape[1:])
    valid = otb != 0  # OTB leaves some border pixels empty: judged where it wrote
    ours_err = max(relative_rmse(ours, field, valid))
    otb_err = max(relative_rmse(otb, field, valid))
    assert ours_err <= otb_err * 1.05 + 1e-4
    assert seam_ratio(ours, field, rects) <= seam_ratio(otb, field, rects) + 0.02


def test_one_input_and_inputs_that_do_not_overlap_are_left_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):  # 3 tiles 40 px apart: no overlap
        data = rng.integers(100, 5000, (2, 30, 30)).astype("uint16")
        paths.append(write_raster(tmp_path / f"t{k}.tif", data,
                                  (500000 + k * 700.0, 10, 0, 5000000, 0, -10), nodata=0))
    for inputs in (paths[:1], paths):
        none = mosaic(inputs, tmp_path / "none.tif")
        logs = []

        def log(message, level="info", logs=logs):
            logs.append((level, message))
        run(Options(inputs=inputs, output=str(tmp_path / "lin.tif"), harmonize="linear"), log=log)
        assert np.array_equal(read(tmp_path / "lin.tif")[0], none)
        if len(inputs) > 1:
            assert any(level == "warning" and "overlap no other input" in m
                       for level, m in logs)


def test_a_pair_whose_overlap_is_all_nodata_takes_no_part(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(1000, 2000, (1, 40, 40)).astype("uint16")
    b = (a * 1.2).astype("uint16")
    a[:, :, 20:] = 0  # a's half under b is nodata
    pa = write_raster(tmp_path / "a.tif", a, (500000, 10, 0, 5000000, 0, -10), nodata=0)
    pb = write_raster(tmp_path / "b.tif", b[:, :, 20:], (500200, 10, 0, 5000000, 0, -10),
                      nodata=0)
    plan = make_plan(Options(inputs=[pa, pb], harmonize="gain"))
    first, second, stats, _ = harmonize.pair_statistics(plan)
    assert len(first) == 0
    assert np.array_equal(harmonize.fit(plan).gains, np.ones((2, 1)))


def test_sparse_solve_matches_a_dense_least_squares_fit():
    rng = np.random.default_rng(5)
    n = 30
    true_g, true_o = rng.uniform(0.8, 1.2, n), rng.uniform(-50, 50, n)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.2 or j == i + 1]
    rows, stats = [], []
    for i, j in pairs:
        f = rng.uniform(100, 900, 40)  # the ground both see
        xi = (f - true_o[i]) / true_g[i] + rng.normal(0, 1, 40)
        xj = (f - true_o[j]) / true_g[j] + rng.normal(0, 1, 40)
        stats.append((40, xi.sum(), xj.sum(), xi @ xi, xj @ xj, xi @ xj))
        rows.append((i, j, xi, xj))
    first, second = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    g, o, linked, _ = lsq.solve_band(n, first, second, np.array(stats), True)
    # Dense reference: minimise the residual with mean g = 1 and mean o = 0 as constraints.
    blocks = []
    for i, j, xi, xj in rows:
        row = np.zeros((len(xi), 2 * n))
        row[:, i], row[:, n + i], row[:, j], row[:, n + j] = xi, 1, -xj, -1
        blocks.append(row)
    a = np.vstack(blocks)
    cons = np.zeros((2, 2 * n))
    cons[0, :n], cons[1, n:] = 1.0 / n, 1.0 / n
    kkt = np.block([[2 * a.T @ a, cons.T], [cons, np.zeros((2, 2))]])
    sol = np.linalg.lstsq(kkt, np.r_[np.zeros(2 * n), 1, 0], rcond=None)[0]
    assert linked.all()
    assert np.allclose(g, sol[:n], rtol=1e-6) and np.allclose(o, sol[n:2 * n], atol=1e-3)


def test_resume_after_a_cancel_gives_the_identical_mosaic(linear_tiles, tmp_path):
    small = "BLOCKXSIZE=32|BLOCKYSIZE=32"  # 117 windows of 32 px
    ref = mosaic(linear_tiles["paths"], tmp_path / "ref.tif", harmonize="linear",
                 chunk_size=32, creation_options=small)
    out = tmp_path / "out.tif"
    opts = dict(inputs=linear_tiles["paths"], output=str(out), harmonize="linear",
                chunk_size=32, creation_options=small, threads=1, checkpoint_seconds=0)
    written = []

    def progress(event):
        written.append(event.done)
    with pytest.raises(Cancelled):
        run(Options(**opts), progress=progress, cancel=lambda: len(written) >= 6)
    assert os.path.exists(str(out) + ".partial.json")
    logs = []
    run(Options(resume=True, **opts), log=lambda m, level="info": logs.append(m))
    assert any("coefficients of the interrupted run reused" in m for m in logs)
    assert any("RESUME:" in m and "already written" in m and not m.startswith("RESUME: 0 ")
               for m in logs)
    assert np.array_equal(read(out)[0], ref)


def test_a_thousand_small_inputs_fit_in_bounded_memory(tmp_path):
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("needs /usr/bin/time")
    rng = np.random.default_rng(7)
    paths = []
    field = rng.uniform(1000, 3000, (330, 330))
    for r in range(32):  # 32 x 32 tiles of 20 px, overlapping by 10
        for c in range(32):
            part = field[r * 10:r * 10 + 20, c * 10:c * 10 + 20] * rng.uniform(0.8, 1.2)
            paths.append(write_raster(tmp_path / f"s{r}_{c}.tif", part.astype("uint16")[None],
                                      (500000 + c * 100.0, 10, 0, 5000000 - r * 100.0, 0, -10),
                                      nodata=0, options=["COMPRESS=NONE"]))
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable,
                           "-m", "streaming_mosaic", *paths, "-o", str(tmp_path / "o.tif"),
                           "--harmonize", "gain", "--memory-mb", "64", "--quiet"],
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb <= 64 + INTERPRETER_BASELINE_MB + 60
    logs = []
    plan = make_plan(Options(inputs=paths, harmonize="gain"))
    harmony = plan.harmony = harmonize.fit(plan, log=lambda m, level="info": logs.append(m))
    assert harmony.pairs < 10 * len(paths)  # neighbours only, never N x N
    assert any("fitted on" in m and " s (" in m for m in logs)
    assert len(harmonize.describe(plan)) < 10  # a summary, not a 1,024-row table
