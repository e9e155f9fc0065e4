"""Shared test set-up: make the checkout importable as ``streaming_mosaic``.

The repository root is the package, whatever the checkout folder is called, so
the tests put a link named ``streaming_mosaic`` to it in a private folder and
put that folder first on sys.path (and on PYTHONPATH for subprocesses).
"""

import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_PARENT = tempfile.mkdtemp(prefix="sm-pkg-")
os.symlink(ROOT, os.path.join(PKG_PARENT, "streaming_mosaic"))
os.environ["SM_PKG_PARENT"] = PKG_PARENT
sys.path.insert(0, PKG_PARENT)
TEST_PATHS = [PKG_PARENT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tools")]
os.environ["PYTHONPATH"] = os.pathsep.join(
    TEST_PATHS + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
for path in reversed(TEST_PATHS):
    sys.path.insert(0, path)


@pytest.fixture
def pkg_parent():
    """Folder holding the ``streaming_mosaic`` link (for QGIS_PLUGINPATH)."""
    return PKG_PARENT


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    """nginx serving a fresh folder on 127.0.0.1 (tools/loopback.py), stopped after the module."""
    from loopback import Nginx
    if not Nginx.available():
        pytest.fail("nginx is missing: run tools/ensure-deps.sh test")
    server = Nginx(tmp_path_factory.mktemp("nginx")).start()
    yield server
    server.stop()
