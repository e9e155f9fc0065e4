"""The summary tells the run's own memory from its process's peak (QGIS's, in QGIS)."""

import json
import re
import subprocess

from helpers import PYTHON, run_cli, tile_set

SUMMARY = re.compile(r"peak memory of this run: \+(\d+) MB over the process's (\d+) MB before "
                     r"the run; process peak (\d+) MB")

# A process that peaked at 400 MB before the run (QGIS does, long before any mosaic),
# then runs a small mosaic through the core.
IN_A_BIG_PROCESS = """
import json, sys
import numpy as np
from streaming_mosaic.core.engine import run
from streaming_mosaic.core.options import Options
big = np.ones(400 * 2**20, np.uint8)  # every page touched
del big                               # given back to the system (mmap), the peak stays
result = run(Options(inputs=sys.argv[1:-1], output=sys.argv[-1], memory_mb=64))
print(json.dumps([result.rss_before_mb, result.run_peak_mb, result.peak_rss_mb,
                  result.summary()]))
"""


def test_a_run_in_a_process_that_peaked_before_reports_its_own_increase(tmp_path):
    tiles = tile_set(tmp_path, seed=3, grid=(2, 2), size=(300, 200), overlap=20)
    proc = subprocess.run([PYTHON, "-c", IN_A_BIG_PROCESS, *tiles, str(tmp_path / "out.tif")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    before, run_peak, process_peak, summary = json.loads(proc.stdout.splitlines()[-1])
    assert process_peak >= 400          # the process's peak: the numpy array's
    assert 0 < before <= run_peak < before + 150 < process_peak
    increase, shown_before, shown_peak = map(int, SUMMARY.search(summary).groups())
    assert (increase, shown_before, shown_peak) == (round(run_peak - before), round(before),
                                                    round(process_peak))


def test_the_command_line_reports_both(tmp_path):
    tiles = tile_set(tmp_path, seed=4, grid=(2, 2), size=(300, 200), overlap=20)
    proc = run_cli(*tiles, "-o", tmp_path / "out.tif", check=True)
    increase, before, peak = map(int, SUMMARY.search(proc.stderr).groups())
    assert 0 < increase and 0 < before and before + increase <= peak + 1, proc.stderr
    assert "peak memory" not in SUMMARY.sub("", proc.stderr)
