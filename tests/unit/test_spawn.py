"""Local Dask workers start with the running Python, whatever ``sys.executable`` says."""

import os
import subprocess
import sys

import pytest

CHILD = r"""
import multiprocessing, os, sys
sys.executable = {bogus!r}   # as inside QGIS: not the interpreter that runs this code
from streaming_mosaic.core.executors.spawn import use_own_python

def probe(queue):
    from osgeo import gdal
    queue.put((sys.version, gdal.__version__))

if __name__ == "__main__":
    print(use_own_python())
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=probe, args=(queue,))
    proc.start()
    print(queue.get(timeout=60) == (sys.version, __import__("osgeo.gdal").gdal.__version__))
    proc.join()
"""


@pytest.mark.parametrize("bogus", ["/nonexistent/qgis", "/bin/true"])
def test_spawned_children_run_this_python(tmp_path, bogus):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(bogus=bogus))
    env = dict(os.environ, PYTHONPATH=os.environ["SM_PKG_PARENT"])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    chosen, same = proc.stdout.split()
    assert os.path.realpath(chosen) == os.path.realpath(sys.executable)
    assert same == "True"


def test_a_plain_python_is_left_alone():
    import multiprocessing.spawn

    from streaming_mosaic.core.executors.spawn import use_own_python
    before = multiprocessing.spawn.get_executable()
    assert use_own_python() == sys.executable
    assert multiprocessing.spawn.get_executable() == before
