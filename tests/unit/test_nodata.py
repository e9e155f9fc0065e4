"""Nodata semantics: NODATA_INPUT, NODATA_OUTPUT, masks, alpha bands, type promotion, collisions."""

import math
import os

import numpy as np
import pytest

from helpers import folder_state, read, run_cli, smooth_field, vrt_reference, write_raster

RES = 10.0
ORIGIN = (500000.0, 5000000.0)
MANY_WINDOWS = ("--chunk", "48", "--co", "BLOCKXSIZE=16", "--co", "BLOCKYSIZE=16")


def isnan(value):
    return isinstance(value, float) and math.isnan(value)


class Scene:
    """Tiles written as GeoTIFFs and the same pixels kept in memory (the reference)."""

    def __init__(self, folder):
        self.folder = folder
        self.paths, self.tiles = [], []

    def add(self, data, x, y, nodata=None, alpha=None):
        """Write a tile at pixel (x, y) of the grid; the first tile is at (0, 0)."""
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        path = str(self.folder / f"in{len(self.paths)}.tif")
        write_raster(path, data, (ORIGIN[0] + x * RES, RES, 0, ORIGIN[1] - y * RES, 0, -RES),
                     nodata=nodata, alpha=alpha)
        ok = np.ones(data.shape, bool)
        if nodata is not None:
            ok &= ~np.isnan(data) if isnan(nodata) else data != nodata
        if alpha is not None:
            ok &= (alpha != 0)[None]
        self.paths.append(path)
        self.tiles.append((data, ok, x, y))
        return path

    @property
    def data(self):
        return self._placed()[0]

    @property
    def valid(self):
        return self._placed()[1]

    def _placed(self):
        """(n, bands, H, W) float64 values and validity on the union grid."""
        width = max(x + d.shape[2] for d, _ok, x, _y in self.tiles)
        height = max(y + d.shape[1] for d, _ok, _x, y in self.tiles)
        shape = (len(self.tiles), self.tiles[0][0].shape[0], height, width)
        data, valid = np.zeros(shape), np.zeros(shape, bool)
        for i, (d, ok, x, y) in enumerate(self.tiles):
            data[i, :, y:y + d.shape[1], x:x + d.shape[2]] = d
            valid[i, :, y:y + d.shape[1], x:x + d.shape[2]] = ok
        return data, valid

    def expected(self, method, out_dtype, nodata, also_invalid=None, nudge=True):
        """The rule from the in-memory pixels; ``nodata`` None writes 0 and moves nothing.

        With ``nudge``, valid results equal to nodata become the next value up (the next
        value down at the type's top), as the rules promise."""
        data, valid = self._placed()
        if also_invalid is not None:
            valid &= ~(np.isnan(data) if isnan(also_invalid) else data == also_invalid)
        count = valid.sum(axis=0)
        if method == "last":
            out = np.zeros(data.shape[1:])
            for i in range(len(data)):
                out = np.where(valid[i], data[i], out)
        elif method == "min":
            out = np.where(valid, data, np.inf).min(axis=0)
        elif method == "max":
            out = np.where(valid, data, -np.inf).max(axis=0)
        elif method == "mean":
            out = np.where(valid, data, 0).sum(axis=0) / np.maximum(count, 1)
        elif method == "count":
            out = count.astype(float)
        covered = count > 0
        out = np.where(covered, out, 0.0)
        out_dtype = np.dtype(out_dtype)
        if out_dtype.kind in "iu":
            out = np.clip(np.rint(out), np.iinfo(out_dtype).min, np.iinfo(out_dtype).max)
        out = out.astype(out_dtype)
        if nodata is not None:
            if nudge:
                hit = covered & (np.isnan(out) if isnan(nodata) else out == nodata)
                if out_dtype.kind == "f":
                    out[hit] = np.nextafter(out_dtype.type(nodata), out_dtype.type(np.inf))
                else:
                    out[hit] = nodata + 1 if nodata < np.iinfo(out_dtype).max else nodata - 1
            out[~covered] = nodata
        return out, covered


def field(seed, shape, low, high, dtype="uint8"):
    """A seeded smooth (rows, cols) field of ``dtype`` between low and high."""
    return smooth_field(np.random.default_rng(seed), *shape, low, high, dtype)


@pytest.mark.parametrize("dtype,nodata,marker", [("uint16", 0, 777.0),
                                                 ("float32", -9999.0, float("nan"))])
@pytest.mark.parametrize("method", ["last", "min", "count"])
def test_nodata_input_masks_the_value_in_every_input(tmp_path, dtype, nodata, marker, method):
    scene = Scene(tmp_path)
    rng = np.random.default_rng(3)
    for i, (x, y) in enumerate([(0, 0), (60, 30), (90, 50)]):
        data = smooth_field(rng, 100, 110, 100, 2000, dtype)[None].repeat(2, axis=0)
        data[1] += 5
        data[:, :, :3] = nodata
        for _ in range(6):  # patches of the marker value, in one band or both
            r, c = rng.integers(0, 85, 2)
            data[rng.integers(0, 2) if i else slice(None), r:r + 15, c:c + 15] = marker
        scene.add(data, x, y, nodata=nodata if i != 1 else None)  # one input has no nodata
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--method", method, "--nodata-input", marker,
            *MANY_WINDOWS, "--quiet", check=True)
    got, _gt, nd = read(out)
    want_nd = None if method == "count" else nodata
    assert nd == want_nd
    want, covered = scene.expected(method, got.dtype, want_nd, also_invalid=marker)
    np.testing.assert_array_equal(got, want)
    marked = np.array([np.isnan(d) if isnan(marker) else d == marker for d in scene.data])
    assert (marked & scene.valid).any()
    if method != "count":
        assert not (np.isnan(got) if isnan(marker) else got == marker).any()


def test_nodata_output_defaults_to_the_first_inputs_nodata(tmp_path):
    scene = Scene(tmp_path)
    a = field(1, (80, 90), 1, 250)
    b = field(2, (80, 90), 1, 250)
    b[:, :10] = 255  # the second input's own nodata: not data, even though the output's is 0
    scene.add(a, 0, 0, nodata=0)
    scene.add(b, 70, 40, nodata=255)
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--method", "max", "--quiet", check=True)
    got, _gt, nd = read(out)
    assert nd == 0
    want, covered = scene.expected("max", np.uint8, 0)
    assert (~covered).any()
    np.testing.assert_array_equal(got[0], want[0])
    assert not (got == 255).any()


@pytest.mark.parametrize("dtype,nodata,override", [("uint8", 0, 255.0), ("int16", -9999, 0.0),
                                                   ("float32", -9999.0, float("nan"))])
def test_nodata_output_overrides_the_value_written_where_nothing_is_valid(tmp_path, dtype, nodata,
                                                                          override):
    scene = Scene(tmp_path)
    for i, (x, y) in enumerate([(0, 0), (70, 40)]):
        data = field(10 + i, (80, 90), 1, 250, dtype)
        data[20:30, 20:40] = nodata
        scene.add(data, x, y, nodata=nodata)
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--method", "last", "--nodata-output", override, "--quiet",
            check=True)
    got, _gt, nd = read(out)
    assert nd == override or (isnan(override) and math.isnan(nd))
    want, covered = scene.expected("last", dtype, override)
    assert (~covered).sum() > 1000
    np.testing.assert_array_equal(got, want)


def test_inputs_without_nodata_give_zero_and_no_nodata_flag_as_gdal(tmp_path):
    # Three tiles leave one corner of the union empty.
    scene = Scene(tmp_path)
    for i, (x, y) in enumerate([(0, 0), (80, 0), (0, 70)]):
        scene.add(np.stack([field(20 + i, (90, 100), 0, 255),
                            field(30 + i, (90, 100), 0, 255)]), x, y)
    assert any((d == 0).any() for d, *_ in scene.tiles)  # zeros are data here
    out = tmp_path / "out.tif"
    proc = run_cli(*scene.paths, "-o", out, *MANY_WINDOWS, check=True)
    assert "no nodata value or mask" in proc.stderr
    got, gt, nd = read(out)
    want, want_gt, want_nd = read(vrt_reference(scene.paths, tmp_path / "ref.tif"))
    assert nd is None and want_nd is None
    assert gt == want_gt
    np.testing.assert_array_equal(got, want)
    mine, covered = scene.expected("last", np.uint8, None)
    assert (~covered).sum() == 2 * 80 * 70 and not got[~covered].any()
    np.testing.assert_array_equal(got, mine)


@pytest.mark.parametrize("method", ["max", "mean"])
def test_inputs_without_nodata_other_rules_write_zero_without_flag(tmp_path, method):
    scene = Scene(tmp_path)
    scene.add(field(5, (70, 80), 0, 255), 0, 0)
    scene.add(field(6, (70, 80), 0, 255), 70, 50)
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--method", method, "--quiet", check=True)
    got, _gt, nd = read(out)
    assert nd is None
    want, _covered = scene.expected(method, np.uint8, None)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype,nodata_out,moved_to", [
    ("uint8", 200.0, 201), ("uint8", 255.0, 254),  # the type's top moves down
    ("int16", -32768.0, -32767),
    ("float32", 150.0, float(np.nextafter(np.float32(150), np.float32(np.inf)))),
])
def test_valid_value_equal_to_nodata_output_is_moved_not_holed(tmp_path, dtype, nodata_out,
                                                               moved_to):
    scene = Scene(tmp_path)
    for i, (x, y) in enumerate([(0, 0), (70, 40)]):
        data = field(40 + i, (80, 90), 100, 250, dtype)
        data[:8, :8] = 0
        data[50:60, 50:60] = nodata_out  # certainly some collisions
        scene.add(data, x, y, nodata=0)
    out = tmp_path / "out.tif"
    proc = run_cli(*scene.paths, "-o", out, "--method", "last", "--nodata-output", nodata_out,
                   check=True)
    got, _gt, nd = read(out)
    assert nd == nodata_out
    want, covered = scene.expected("last", dtype, nodata_out, nudge=False)
    hit = covered & (want == np.dtype(dtype).type(nodata_out))
    assert hit.sum() >= 100
    want[hit] = moved_to
    np.testing.assert_array_equal(got, want)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")
                and "equal to the nodata value" in line]
    assert len(warnings) == 1 and f"{int(hit.sum())} valid pixel(s)" in warnings[0]


def test_computed_mean_equal_to_input_nodata_is_moved(tmp_path):
    scene = Scene(tmp_path)
    scene.add(np.full((40, 80), -9998, np.int16), 0, 0, nodata=-9999)
    scene.add(np.full((40, 80), -10000, np.int16), 40, 0, nodata=-9999)
    out = tmp_path / "out.tif"
    proc = run_cli(*scene.paths, "-o", out, "--method", "mean", check=True)
    got, _gt, nd = read(out)
    assert nd == -9999
    assert (got[0, :, :40] == -9998).all() and (got[0, :, 80:] == -10000).all()
    assert (got[0, :, 40:80] == -9998).all()  # mean -9999 is nodata: moved to -9998
    assert f"{40 * 40} valid pixel(s) equal to the nodata value -9999" in proc.stderr


@pytest.mark.parametrize("dtype,method,value,extra", [
    ("uint8", "last", "-1", ()), ("uint8", "max", "300", ()), ("int16", "last", "nan", ()),
    ("uint16", "mean", "0.5", ()), ("uint8", "count", "-1", ()),
    ("int16", "last", None, ("--dtype", "uint8")),  # the inputs' nodata -9999 does not fit
])
def test_unrepresentable_nodata_output_is_rejected(tmp_path, dtype, method, value, extra):
    ins = tmp_path / "in"
    ins.mkdir()
    nodata = -9999 if dtype == "int16" else 0
    paths = [write_raster(ins / f"{i}.tif", field(i, (30, 40), 1, 200, dtype),
                          (ORIGIN[0] + 20 * i * RES, RES, 0, ORIGIN[1], 0, -RES), nodata=nodata)
             for i in range(2)]
    before = folder_state(ins)
    out = tmp_path / "out" / "mosaic.tif"
    out.parent.mkdir()
    args = ("--nodata-output", value) if value is not None else ()
    proc = run_cli(*paths, "-o", out, "--method", method, *args, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "NODATA_OUTPUT" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(out.parent) == []
    assert folder_state(ins) == before


@pytest.mark.parametrize("method", ["last", "max", "mean", "count"])
def test_alpha_band_is_a_mask_not_data(tmp_path, method):
    scene = Scene(tmp_path)
    rng = np.random.default_rng(8)
    for i, (x, y) in enumerate([(0, 0), (60, 40), (20, 50)]):
        data = np.stack([field(50 + 3 * i + b, (80, 100), 1, 200) for b in range(3)])
        alpha = np.full((80, 100), 255, np.uint8)
        alpha[:, :6] = 0
        for _ in range(4):
            r, c = rng.integers(0, 60, 2)
            alpha[r:r + 20, c:c + 25] = 0
        data[:, alpha == 0] = 255  # garbage under the mask: would win max and shift the mean
        scene.add(data, x, y, alpha=alpha)
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--method", method, *MANY_WINDOWS, "--quiet", check=True)
    got, _gt, nd = read(out)
    assert got.shape[0] == 3  # the alpha band is not an output band
    assert nd is None
    want, covered = scene.expected(method, np.uint8, None)
    assert (~covered).any() and (scene.valid.sum(axis=0) >= 2).any()
    np.testing.assert_array_equal(got, want)
    if method != "count":
        assert not (got == 255).any()


def test_mixed_input_types_promote_as_numpy(tmp_path):
    scene = Scene(tmp_path)
    small = field(60, (80, 90), 1, 250)
    signed = field(61, (80, 90), -3000, 3000, "int16")
    signed[signed == -9999] = -9998
    signed[:5] = -9999
    scene.add(small, 0, 0, nodata=0)
    scene.add(signed, 70, 40, nodata=-9999)
    for method in ("last", "max", "mean"):
        out = tmp_path / f"{method}.tif"
        run_cli(*scene.paths, "-o", out, "--method", method, "--quiet", check=True)
        got, _gt, nd = read(out)
        assert got.dtype == np.result_type(np.uint8, np.int16) == np.int16
        assert nd == 0  # the first input's nodata
        want, covered = scene.expected(method, np.int16, 0)
        assert (want[covered] < 0).any() and (want[covered] > 255).any()
        assert (scene.valid[1] & (scene.data[1] == 0)).any()  # valid zeros: moved to 1
        np.testing.assert_array_equal(got, want, err_msg=method)


def test_count_has_nodata_only_when_nodata_output_is_given(tmp_path):
    scene = Scene(tmp_path)
    for i, (x, y) in enumerate([(0, 0), (50, 30), (25, 60)]):
        data = field(70 + i, (70, 80), 1, 250)
        data[10:25, 10:30] = 0
        scene.add(data, x, y, nodata=0)
    plain, flagged = tmp_path / "plain.tif", tmp_path / "flagged.tif"
    run_cli(*scene.paths, "-o", plain, "--method", "count", "--quiet", check=True)
    run_cli(*scene.paths, "-o", flagged, "--method", "count", "--nodata-output", 2, "--quiet",
            check=True)
    got, _gt, nd = read(plain)
    want, covered = scene.expected("count", np.uint8, None)
    assert nd is None and (~covered).any()
    np.testing.assert_array_equal(got, want)
    got, _gt, nd = read(flagged)
    assert nd == 2
    want, covered = scene.expected("count", np.uint8, 2)
    assert (scene.valid.sum(axis=0) == 2).any()  # counts of 2 are written as 3
    np.testing.assert_array_equal(got, want)


def test_alpha_band_masks_even_when_the_input_also_has_nodata(tmp_path):
    scene = Scene(tmp_path)
    data = np.stack([field(80 + b, (60, 70), 1, 200) for b in range(3)])
    alpha = np.full((60, 70), 255, np.uint8)
    alpha[:, :30] = 0
    data[:, :, :30] = 77  # garbage under the alpha mask, not the nodata value
    data[:, :5, :] = 0    # and a nodata strip
    scene.add(data, 0, 0, nodata=0, alpha=alpha)
    out = tmp_path / "out.tif"
    run_cli(*scene.paths, "-o", out, "--nodata-output", 9, "--quiet", check=True)
    got, _gt, nd = read(out)
    want, covered = scene.expected("last", np.uint8, 9)
    assert (~covered).sum() == 3 * (60 * 30 + 5 * 40)
    np.testing.assert_array_equal(got, want)


def test_alpha_band_masks_a_nodata_input_read_off_the_grid(tmp_path):
    """The same rule on the resampled (one-source VRT) path: the input's origin is half
    a pixel off the grid set by the first input, so it is read through a VRT."""
    base = np.full((40, 40), 50, np.uint8)
    first = write_raster(tmp_path / "base.tif", base, (0, 10, 0, 400, 0, -10), nodata=0)
    data = np.full((3, 30, 30), 200, np.uint8)
    alpha = np.full((30, 30), 255, np.uint8)
    alpha[:, :15] = 0
    data[:, :, :15] = 77  # garbage under the alpha mask
    data[:, :3, :] = 0    # a nodata strip
    second = write_raster(tmp_path / "offgrid.tif", data[0], (105, 10, 0, 395, 0, -10),
                          nodata=0, alpha=alpha)
    out = tmp_path / "out.tif"
    run_cli(first, second, "-o", out, "--quiet", check=True)
    got, gt, _nd = read(out)
    assert gt[0] == 0 and gt[1] == 10
    assert not (got == 77).any()          # nothing under the alpha mask leaks through
    assert (got == 200).sum() > 0         # the unmasked part of the second input is there
    assert set(np.unique(got)) <= {0, 50, 200}


def test_a_hole_in_one_band_of_an_input_read_off_the_grid_stays_in_that_band(tmp_path):
    """On the resampled (one-source VRT) path validity is per band, as on the direct path."""
    base = np.full((2, 40, 40), 50, np.uint8)
    first = write_raster(tmp_path / "base.tif", base, (0, 10, 0, 400, 0, -10), nodata=0)
    top = np.full((2, 30, 30), 200, np.uint8)
    top[1, 10:20, 10:20] = 0  # a hole in band 2 only
    second = write_raster(tmp_path / "offgrid.tif", top, (105, 10, 0, 395, 0, -10), nodata=0)
    out = tmp_path / "out.tif"
    run_cli(first, second, "-o", out, "--quiet", check=True)
    got, _gt, _nd = read(out)
    covered = got[0] == 200
    hole = covered & (got[1] != 200)
    assert 50 <= hole.sum() <= 150
    assert (got[1][hole] == 50).all()  # the base shows through in band 2 only
