"""The Python API: streaming_mosaic.mosaic / plan with keyword names, typed errors,
custom rules, and `pip install .` giving a working `streaming-mosaic` command."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

import streaming_mosaic
from helpers import read, tile_set, vrt_reference, write_raster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    return tile_set(str(folder), seed=11, grid=(2, 2), size=(300, 260), overlap=40)


def larger_magnitude(current, new):
    """A user's own rule (module-level, so it can travel to worker processes)."""
    return np.where(np.abs(new) > np.abs(current), new, current)


def test_mosaic_with_keyword_names_matches_gdal_and_reports_progress(tiles, tmp_path):
    seen = []
    out = tmp_path / "m.tif"
    result = streaming_mosaic.mosaic(tiles, out, method="last", compression="zstd",
                                     memory_mb=64, chunk_size=256,
                                     progress=lambda event: seen.append(event.fraction))
    assert result.output == str(out)
    assert (result.width, result.height) == (gdal.Open(str(out)).RasterXSize,
                                             gdal.Open(str(out)).RasterYSize)
    assert len(seen) >= result.windows > 1
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    ref = vrt_reference(tiles, tmp_path / "ref.tif")
    np.testing.assert_array_equal(read(out)[0], read(ref)[0])
    ds = gdal.Open(str(out))
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "ZSTD"


def test_plan_reads_no_pixels_and_takes_the_same_keywords(tiles):
    plan = streaming_mosaic.plan(tiles, method="max", resolution="lowest", bands=[1],
                                 creation_options={"BLOCKXSIZE": "256", "BLOCKYSIZE": "256"})
    assert plan.method == "max" and plan.band_count == 1
    assert plan.block == 256 and plan.grid.width > 300


def test_a_custom_pairwise_rule_passes_through_the_api(tmp_path):
    rng = np.random.default_rng(5)
    gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    arrays = [rng.integers(-500, 500, (1, 64, 80)).astype(np.int16) for _ in range(3)]
    arrays[1][0, :10] = -32768  # nodata rows
    paths = []
    for i, arr in enumerate(arrays):
        paths.append(write_raster(str(tmp_path / f"d{i}.tif"), arr, gt, nodata=-32768))
    rule = streaming_mosaic.pairwise_rule("absmax", larger_magnitude)
    out = tmp_path / "absmax.tif"
    streaming_mosaic.mosaic(paths, out, method=rule, threads=2, chunk_size=256)
    stack = np.ma.masked_equal(np.stack(arrays), -32768)
    pick = np.ma.argmax(np.abs(stack), axis=0, fill_value=-1)
    expected = np.take_along_axis(stack.filled(0), pick[None], axis=0)[0]
    np.testing.assert_array_equal(read(out)[0], expected)


def test_errors_are_python_families_with_the_culprit_as_attribute(tiles, tmp_path):
    with pytest.raises(ValueError) as info:
        streaming_mosaic.mosaic(tiles, tmp_path / "x.tif", methd="max")
    assert isinstance(info.value, streaming_mosaic.OptionError)
    assert info.value.option == "methd" and "\n" not in str(info.value)
    with pytest.raises(streaming_mosaic.OptionError) as info:
        streaming_mosaic.plan(tiles, compression="lzma")
    assert "COMPRESSION" in info.value.option and "lzma" in str(info.value)
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(OSError) as info:
        streaming_mosaic.plan([missing])
    assert isinstance(info.value, streaming_mosaic.InputError)
    assert info.value.path == missing and str(info.value).startswith(missing)
    with pytest.raises(OSError) as info:
        streaming_mosaic.mosaic(tiles, tmp_path / "no" / "such" / "folder" / "x.tif")
    assert isinstance(info.value, streaming_mosaic.OutputError)
    assert not os.path.exists(tmp_path / "no")


def test_enum_values_by_name_index_or_alias_are_one_name_in_the_options():
    opts = streaming_mosaic.options(["a.tif"], "o.tif", resampling="near", data_type="byte",
                                    method=4)
    assert (opts.resampling, opts.data_type, opts.method) == ("nearest", "uint8", "mean")
    assert streaming_mosaic.options(["a.tif"]).method == "last"


def test_readme_api_example_runs_as_written(tmp_path):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index("<!-- api-example:start -->")
    block = text[start:text.index("<!-- api-example:end -->")]
    code = block.split("```python", 1)[1].split("```", 1)[0]
    os.mkdir(tmp_path / "tiles")
    tile_set(str(tmp_path / "tiles"), seed=3, grid=(2, 1), size=(200, 150), overlap=20)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(tmp_path / "mosaic.tif")
    assert "Mpix" in proc.stdout or "windows" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_pip_install_gives_a_working_streaming_mosaic_command(tiles, tmp_path):
    src = tmp_path / "src"
    # What a clone holds, not what runs left in the working tree (bench/out has links).
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "out", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                          str(src)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "cmd.tif"
    proc = subprocess.run([str(venv / "bin" / "streaming-mosaic"), *tiles, "-o", str(out),
                           "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run([str(venv / "bin" / "streaming-mosaic"), *tiles, "-o", str(out),
                          "--method", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    ref = vrt_reference(tiles, tmp_path / "ref.tif")
    np.testing.assert_array_equal(read(out)[0], read(ref)[0])
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import streaming_mosaic, os; print(streaming_mosaic.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(venv) in where.stdout
