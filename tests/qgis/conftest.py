"""A real headless QGIS for the tests: in-process (processing.run) and qgis_process.bin.

The QGIS profile is a throwaway folder (never the user's own); the plugin is
found through QGIS_PLUGINPATH pointing at a folder holding a
``streaming_mosaic`` link to this checkout.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

PKG_PARENT = os.environ["SM_PKG_PARENT"]  # set by tests/conftest.py
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"
SANDBOX = tempfile.mkdtemp(prefix="sm-qgis-")
PROFILE = os.path.join(SANDBOX, "config")
RUNTIME = os.path.join(SANDBOX, "xdg")
TMPDIR = os.path.join(SANDBOX, "tmp")
for folder in (PROFILE, RUNTIME, TMPDIR):
    os.makedirs(folder, mode=0o700, exist_ok=True)

QGIS_ENV = {
    "QT_QPA_PLATFORM": "offscreen",
    "XDG_RUNTIME_DIR": RUNTIME,
    "QGIS_CUSTOM_CONFIG_PATH": PROFILE,
    "QGIS_PLUGINPATH": PKG_PARENT,
    "TMPDIR": TMPDIR,  # QGIS and Qt leave qt_temp-* folders there
}
os.environ.update(QGIS_ENV)
if QGIS_PLUGINS not in sys.path:
    sys.path.append(QGIS_PLUGINS)

_APP = {}


@pytest.fixture(scope="module")
def tiles(request, tmp_path_factory):
    """The module's tile set: ``TILES`` in the test module gives tile_set's arguments."""
    from helpers import tile_set
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_tiles")
    return tile_set(folder, **request.module.TILES)


def _start_qgis():
    if _APP:
        return _APP["app"]
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing
    Processing.initialize()
    import qgis.utils
    assert qgis.utils.loadPlugin("streaming_mosaic"), "plugin did not load"
    assert qgis.utils.startProcessingPlugin("streaming_mosaic"), "provider did not start"
    _APP["app"] = app
    return app


@pytest.fixture(scope="session")
def qgis_app():
    """The running QgsApplication with the plugin's provider registered."""
    return _start_qgis()


@pytest.fixture
def registry(qgis_app):
    from qgis.core import QgsApplication
    return QgsApplication.processingRegistry()


def pytest_sessionfinish(session, exitstatus):
    _APP["status"] = int(exitstatus)


def pytest_unconfigure(config):
    # QGIS may crash while tearing down Qt objects after the tests; once pytest has
    # printed its summary, leave with pytest's own status.
    if "app" in _APP:
        sys.stdout.flush()
        sys.stderr.flush()
        shutil.rmtree(SANDBOX, ignore_errors=True)
        os._exit(_APP.get("status", 0))


def qgis_process(*args, timeout=300):
    """Run ``qgis_process.bin`` with the throwaway profile; return the CompletedProcess."""
    env = dict(os.environ)
    env.update(QGIS_ENV)
    return subprocess.run(["qgis_process.bin", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def qgis_process_enabled():
    """qgis_process.bin with the plugin enabled in the throwaway profile."""
    proc = qgis_process("plugins", "enable", "streaming_mosaic")
    assert proc.returncode == 0 or "already enabled" in proc.stdout + proc.stderr, \
        proc.stdout + proc.stderr
    return qgis_process


def qgis_process_json(*args, timeout=300):
    proc = qgis_process("--json", *args, timeout=timeout)
    start = proc.stdout.find("{")
    data = json.loads(proc.stdout[start:]) if start >= 0 else None
    return proc, data


@pytest.fixture(scope="session")
def qgis_json_enabled(qgis_process_enabled):
    """qgis_process_json with the plugin enabled in the throwaway profile."""
    return qgis_process_json


@pytest.fixture(scope="session")
def qgis_profile():
    """The throwaway QGIS config folder (QGIS_CUSTOM_CONFIG_PATH) and the environment used."""
    return PROFILE, dict(QGIS_ENV)
