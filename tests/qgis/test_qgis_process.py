"""The standalone qgis_process.bin tool runs the plugin's algorithms from a throwaway profile."""

import os
import re

import numpy as np
import pytest

from helpers import read, tile_set, vrt_reference

# The contract's parameters of streamingmosaic:mosaic, in order (CONTRACT.md).
CONTRACT = ["INPUT", "METHOD", "PERCENTILE", "ORDER", "ADD_ALPHA", "FEATHER_DISTANCE",
            "NODATA_INPUT", "NODATA_OUTPUT", "TARGET_CRS",
            "RESAMPLING", "RESOLUTION", "PIXEL_SIZE", "TARGET_ALIGNED_PIXELS", "EXTENT", "BANDS",
            "DATA_TYPE", "COMPRESSION", "CREATION_OPTIONS", "COG", "OVERVIEWS", "CHUNK_SIZE",
            "MEMORY_MB", "THREADS", "RESUME", "OUTPUT"]
METHODS = ["Last", "First", "Minimum", "Maximum", "Mean", "Sum", "Count", "Feather", "Median",
           "Percentile", "Mode"]


TILES = dict(seed=31, grid=(2, 2), size=(150, 120), overlap=20, bands=2, dtype="uint16")


def _inputs(paths):
    return [f"INPUT={p}" for p in paths]


def test_plugin_is_enabled_in_a_throwaway_profile(qgis_process_enabled, qgis_profile):
    profile, env = qgis_profile
    assert env["QGIS_CUSTOM_CONFIG_PATH"] == profile
    assert not profile.startswith(os.path.join(os.path.expanduser("~"), ".local", "share"))
    with open(os.path.join(profile, "profiles", "default", "QGIS", "QGIS3.ini")) as fh:
        assert re.search(r"^streaming_mosaic=true$", fh.read(), re.M)


def test_run_matches_gdal_and_reports_progress(qgis_process_enabled, tiles, tmp_path):
    out = str(tmp_path / "out.tif")
    proc = qgis_process_enabled("run", "streamingmosaic:mosaic", "--", *_inputs(tiles),
                                f"OUTPUT={out}", "CHUNK_SIZE=256")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0...10...20" in proc.stdout and "100" in proc.stdout
    assert re.search(rf"^OUTPUT:\s+{re.escape(out)}$", proc.stdout, re.M)
    got, gt, nodata = read(out)
    want, want_gt, want_nodata = read(vrt_reference(tiles, tmp_path / "ref.tif"))
    assert (gt, nodata) == (want_gt, want_nodata)
    np.testing.assert_array_equal(got, want)


def test_json_run_reports_the_output(qgis_json_enabled, tiles, tmp_path):
    run_json = qgis_json_enabled
    out = str(tmp_path / "max.tif")
    proc, data = run_json("run", "streamingmosaic:mosaic", "--", *_inputs(tiles),
                          f"OUTPUT={out}", "METHOD=3", "COMPRESSION=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert data["results"]["OUTPUT"] == out
    assert data["algorithm_details"]["id"] == "streamingmosaic:mosaic"
    assert data["inputs"]["METHOD"] in ("3", 3)
    got, gt, nodata = read(out)
    # numpy reference: the largest valid value of the aligned tiles, nodata where none.
    want = np.full(got.shape, -1, np.int64)
    for path in tiles:
        arr, tile_gt, tile_nodata = read(path)
        r0, c0 = round((tile_gt[3] - gt[3]) / gt[5]), round((tile_gt[0] - gt[0]) / gt[1])
        view = want[:, r0:r0 + arr.shape[1], c0:c0 + arr.shape[2]]
        np.copyto(view, np.maximum(view, arr), where=arr != tile_nodata)
    want[want < 0] = nodata
    np.testing.assert_array_equal(got, want)
    from osgeo import gdal
    ds = gdal.Open(out)
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"


def test_help_lists_every_contract_parameter(qgis_process_enabled):
    proc = qgis_process_enabled("help", "streamingmosaic:mosaic")
    assert proc.returncode == 0, proc.stderr
    arguments = proc.stdout.split("Arguments", 1)[1].split("Outputs", 1)[0]
    listed = re.findall(r"^([A-Z_]+): ", arguments, re.M)
    assert [name for name in listed if name in CONTRACT] == CONTRACT
    method = arguments.split("METHOD:", 1)[1].split("PERCENTILE:", 1)[0]
    for index, label in enumerate(METHODS):
        assert re.search(rf"- {index}: {label}\b", method), (index, label)


def test_missing_input_fails_naming_the_file(qgis_process_enabled, tiles, tmp_path):
    missing = str(tmp_path / "no_such_tile.tif")
    out = str(tmp_path / "out.tif")
    proc = qgis_process_enabled("run", "streamingmosaic:mosaic", "--", *_inputs(tiles[:1]),
                                f"INPUT={missing}", f"OUTPUT={out}")
    assert proc.returncode != 0
    assert "no_such_tile.tif" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not os.path.exists(out)


def test_list_shows_the_provider_and_plugin(qgis_process_enabled):
    algorithms = qgis_process_enabled("list")
    assert algorithms.returncode == 0
    block = algorithms.stdout.split("Streaming Mosaic", 1)[1]
    assert "streamingmosaic:mosaic\tMosaic rasters (streaming)" in block
    assert "streamingmosaic:plan" in block
    plugins = qgis_process_enabled("plugins")
    assert re.search(r"^\* streaming_mosaic$", plugins.stdout, re.M)


@pytest.fixture(scope="module")
def many_windows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qp_windows")
    return tile_set(folder, seed=32, grid=(3, 3), size=(600, 500), overlap=20, bands=1,
                    dtype="uint16")


def test_run_keeps_its_progress_bar_on_one_line(qgis_process_enabled, many_windows, tmp_path):
    """qgis_process prints every progress text on a line of its own, splitting its
    0...10...100 bar: the mosaic sends it none (the desktop dialog still logs them)."""
    out = str(tmp_path / "out.tif")
    proc = qgis_process_enabled("run", "streamingmosaic:mosaic", "--", *_inputs(many_windows),
                                f"OUTPUT={out}", "CHUNK_SIZE=256", "COG=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"method last; (\d+) window", proc.stdout).group(1) == "42"
    bar = "0...10...20...30...40...50...60...70...80...90...100 - done."
    assert re.search(rf"^{re.escape(bar)}$", proc.stdout, re.M), proc.stdout
    # The algorithm's own lines: between qgis_process's Inputs block and its Results block.
    ours = proc.stdout.split(f"OUTPUT:\t{out}\n", 1)[1].split("Results", 1)[0]
    lines = [line for line in ours.splitlines() if line.strip() and not line.startswith("---")]
    assert len(lines) <= 12, lines
    assert not any(line.startswith(("window ", "COG")) for line in lines), lines
    assert lines[-1].startswith("Finished: ")
    np.testing.assert_array_equal(read(out)[0], read(vrt_reference(many_windows,
                                                                   tmp_path / "ref.tif"))[0])


def test_local_dask_cluster_starts_from_qgis_process(qgis_process_enabled, many_windows, tmp_path):
    """Inside qgis_process, Python is embedded: ``sys.executable`` is not the interpreter QGIS
    runs (here the first python3 on PATH), so Dask's spawned workers could not import GDAL and
    the cluster never came up. The workers now run QGIS's own Python."""
    pytest.importorskip("distributed")  # tools/ensure-deps.sh test installs it
    out, local = str(tmp_path / "dask.tif"), str(tmp_path / "local.tif")
    proc = qgis_process_enabled("run", "streamingmosaic:mosaic", "--", *_inputs(many_windows),
                                f"OUTPUT={out}", "CHUNK_SIZE=256", "METHOD=4",
                                "DASK_SCHEDULER=local:2", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = qgis_process_enabled("run", "streamingmosaic:mosaic", "--", *_inputs(many_windows),
                                f"OUTPUT={local}", "CHUNK_SIZE=256", "METHOD=4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got, want = read(out), read(local)
    assert got[1:] == want[1:]
    np.testing.assert_array_equal(got[0], want[0])
