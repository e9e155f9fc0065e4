"""The CLI (a process of its own) allocates from one glibc arena; the API, in a user's
process, leaves malloc as it found it. Arenas are counted with glibc's malloc_info."""

import json
import subprocess
import sys

import pytest

from helpers import PYTHON, tile_set

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Runs a small compressed mosaic on 2 worker threads (and GDAL's compression threads),
# through the CLI's main() or the API, then prints how many malloc arenas the process has.
COUNT_ARENAS = """
import ctypes, json, os, sys, tempfile
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
how, out, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
if how == "cli":
    from streaming_mosaic import cli
    assert cli.main([*inputs, "-o", out, "--quiet", "--threads", "2", "--compress", "lzw",
                     "--memory-mb", "64", "--chunk", "256"]) == 0
else:
    import streaming_mosaic
    streaming_mosaic.mosaic(inputs, out, threads=2, compression="LZW", memory_mb=64,
                            chunk_size=256)
path = tempfile.mktemp()
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
text = open(path).read()
os.unlink(path)
print(json.dumps(text.count("<heap nr=")))
"""


def arenas(tmp_path, how):
    tiles = tile_set(tmp_path, seed=5, grid=(2, 2), size=(700, 600), overlap=40)
    proc = subprocess.run([PYTHON, "-c", COUNT_ARENAS, how, str(tmp_path / f"{how}.tif"),
                           *tiles], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_command_line_allocates_from_one_arena(tmp_path):
    assert arenas(tmp_path, "cli") == 1


def test_the_api_leaves_the_arenas_of_its_process_alone(tmp_path):
    # Worker threads get arenas of their own, as in any threaded process: the count
    # that shows the CLI's limit is a real one.
    assert arenas(tmp_path, "api") > 1
