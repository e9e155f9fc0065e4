"""`make package` builds a zip QGIS installs as is: one streaming_mosaic/ folder holding the
working tree's plugin files only, which qgis_process loads from a profile's plugin folder."""

import os
import py_compile
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from helpers import read, tile_set, vrt_reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOP = "streaming_mosaic/"
NEVER = {"tests", "bench", "tools", ".ci", ".git", "__pycache__", ".pytest_cache", "build",
         "__MACOSX"}


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("zip") / "streaming_mosaic.zip")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "package.py"),
                           "--output", out], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(out) and out in proc.stdout
    return out


def test_make_package_calls_the_packager():
    proc = subprocess.run(["make", "-n", "-C", ROOT, "package"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"tools/package\.py --output streaming_mosaic\.zip", proc.stdout)


def test_zip_has_one_top_folder_and_no_development_files(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert names[0] == TOP
    assert all(n.startswith(TOP) for n in names)
    for name in names:
        parts = name.split("/")
        assert not NEVER & set(parts), name
        assert ".." not in parts and "\\" not in name, name
        assert not name.endswith((".pyc", ".pyo", ".zip", ".partial", ".aux.xml")), name
    files = {n[len(TOP):] for n in names if not n.endswith("/")}
    for required in ("__init__.py", "metadata.txt", "README.md", "plugin.py", "cli.py",
                     "resources/icon.svg", "resources/models/mosaic_then_hillshade.model3"):
        assert required in files, required
    if os.path.exists(os.path.join(ROOT, "LICENSE")):
        assert "LICENSE" in files
    for folder in ("Makefile", "pytest.ini", ".gitignore", ".gitattributes"):
        assert folder not in files
    assert os.path.getsize(plugin_zip) < 25_000_000  # plugins.qgis.org's upload limit


def test_zip_holds_the_working_tree_files(plugin_zip, tmp_path):
    """Every plugin module as it is now on disk (uncommitted edits and new files included)."""
    with zipfile.ZipFile(plugin_zip) as zf:
        packaged = {n[len(TOP):]: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
        zf.extractall(tmp_path)
    expected = ["__init__.py", "plugin.py", "metadata.txt"]
    for folder in ("core", "algorithms"):
        expected += [f"{folder}/{n}" for n in os.listdir(os.path.join(ROOT, folder))
                     if n.endswith(".py")]
    expected += [f"resources/models/{n}" for n in os.listdir(os.path.join(ROOT, "resources",
                                                                          "models"))]
    for name in expected:
        with open(os.path.join(ROOT, name), "rb") as fh:
            assert packaged.get(name) == fh.read(), name
    for name in packaged:
        if name.endswith(".py"):
            py_compile.compile(str(tmp_path / TOP / name), cfile=str(tmp_path / "x.pyc"),
                               doraise=True)


def test_packager_rejects_development_files():
    import package
    good = {name: (b"", 0o644) for name in package.REQUIRED}
    with open(os.path.join(ROOT, "metadata.txt"), "rb") as fh:
        good["metadata.txt"] = (fh.read(), 0o644)
    assert package.check(good)
    for bad in ("tests/test_x.py", "core/__pycache__/x.cpython-311.pyc", "bench/run.py",
                "core/x.pyc"):
        with pytest.raises(package.PackageError, match=re.escape(bad)):
            package.check(dict(good, **{bad: (b"", 0o644)}))
    missing = dict(good)
    del missing["LICENSE"]
    with pytest.raises(package.PackageError, match="LICENSE"):
        package.check(missing)


def test_zip_installs_into_a_profile_and_runs_in_qgis_process(plugin_zip, qgis_profile, tmp_path):
    """As "Install from ZIP": unzipped into <profile>/python/plugins, no QGIS_PLUGINPATH."""
    _, base_env = qgis_profile
    config = tmp_path / "config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    env = {k: v for k, v in os.environ.items()
           if k not in ("QGIS_PLUGINPATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.update({k: base_env[k] for k in ("QT_QPA_PLATFORM", "XDG_RUNTIME_DIR", "TMPDIR")})
    env["QGIS_CUSTOM_CONFIG_PATH"] = str(config)

    def qgis_process(*args):
        return subprocess.run(["qgis_process.bin", *map(str, args)], capture_output=True,
                              text=True, timeout=300, env=env)

    enabled = qgis_process("plugins", "enable", "streaming_mosaic")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    tiles = tile_set(tmp_path, seed=61, grid=(1, 3), size=(90, 70), overlap=15)
    out = str(tmp_path / "zip.tif")
    run = qgis_process("run", "streamingmosaic:mosaic", "--", *[f"INPUT={p}" for p in tiles],
                       f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    got, gt, _ = read(out)
    want, want_gt, _ = read(vrt_reference(tiles, tmp_path / "ref.tif"))
    assert gt == want_gt
    np.testing.assert_array_equal(got, want)
    # The code that ran is the unzipped copy: Python left its bytecode there.
    assert os.path.isdir(plugins / "streaming_mosaic" / "__pycache__")
    assert os.path.isdir(plugins / "streaming_mosaic" / "algorithms" / "__pycache__")
