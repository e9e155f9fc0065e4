#!/usr/bin/python3
"""The ``dask`` case: DASK_SCHEDULER=local:N against the local engine on the bench's data.

    /usr/bin/python3 bench/dask_case.py [--tile 1467] [--workers 2] [--chunk 512]
    /usr/bin/python3 bench/run.py --only dask          # the same, from the bench

Each run is a child process, so its CPU time and peak RSS are its own: the
client's (``RUSAGE_SELF``; with ``local:N`` the Dask scheduler runs in the
client process too) and the workers' (``RUSAGE_CHILDREN``, counted once the
cluster is closed). Per window, the workers' seconds (render + compress) and the
client's between the first and the last window (scheduler + receive + append +
checkpoint, without starting and stopping the cluster) predict the speedup with
more workers: a window costs ``max(worker_s / N, client_s)`` of wall time when
the client is not the bottleneck, so the speedup over one worker is
``worker_s / max(worker_s / N, client_s)``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

PY = "/usr/bin/python3"

CHILD = r"""
import json, resource, sys, time
import streaming_mosaic
args = json.loads(sys.argv[1])
marks = {}
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
def progress(e):
    if e.phase == "windows" and e.done in (1, e.total):
        marks[e.done] = (cpu(), e.total)
t0 = time.monotonic()
r = streaming_mosaic.mosaic(args["inputs"], args["output"], chunk_size=args["chunk"],
                            memory_mb=args["memory_mb"], dask_scheduler=args["dask"],
                            progress=progress)
steady = (marks[r.windows][0] - marks[1][0]) / max(r.windows - 1, 1) if len(marks) == 2 else 0
wall = time.monotonic() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "windows": r.windows, "mpix": r.width * r.height / 1e6,
                  "client_cpu": me.ru_utime + me.ru_stime, "client_cpu_per_window": steady,
                  "worker_cpu": kids.ru_utime + kids.ru_stime,
                  "client_rss_mb": me.ru_maxrss / 1024, "worker_rss_mb": kids.ru_maxrss / 1024}))
"""


def _package_parent():
    """A folder with a ``streaming_mosaic`` link to the checkout (as the tests make)."""
    parent = tempfile.mkdtemp(prefix="sm-bench-")
    os.symlink(ROOT, os.path.join(parent, "streaming_mosaic"))
    return parent


def run_one(inputs, output, chunk, memory_mb, dask, parent):
    env = dict(os.environ, PYTHONPATH=parent)
    arg = json.dumps({"inputs": inputs, "output": output, "chunk": chunk,
                      "memory_mb": memory_mb, "dask": dask})
    proc = subprocess.run([PY, "-c", CHILD, arg], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def identical(a, b):
    import numpy as np
    from osgeo import gdal
    return np.array_equal(gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray())


def predict(worker_s, client_s, counts=(8, 32, 128)):
    """Speedup over one worker at each worker count (see the module docstring)."""
    return {n: worker_s / max(worker_s / n, client_s, 1e-9) for n in counts}


def run_case(tile=1467, grid=3, workers=2, chunk=512, memory_mb=256, noise=0.002):
    import data
    info = data.mosaic_set(grid=grid, tile=tile, overlap=200, noise=noise)
    inputs = [os.path.join(info["folder"], p) if not os.path.isabs(p) else p
              for p in info["inputs"]]
    parent = _package_parent()
    out = os.path.join(data.OUT, "runs", "dask")
    os.makedirs(out, exist_ok=True)
    local = run_one(inputs, os.path.join(out, "local.tif"), chunk, memory_mb, None, parent)
    dask = run_one(inputs, os.path.join(out, "dask.tif"), chunk, memory_mb,
                   f"local:{workers}", parent)
    same = identical(os.path.join(out, "local.tif"), os.path.join(out, "dask.tif"))
    worker_s = dask["worker_cpu"] / dask["windows"]
    client_s = dask["client_cpu_per_window"]  # steady state: no cluster start and stop
    return {"mpix": local["mpix"], "windows": local["windows"], "chunk": chunk,
            "workers": workers, "local": local, "dask": dask, "identical": same,
            "worker_s_per_window": worker_s, "client_s_per_window": client_s,
            "predicted_speedup": predict(worker_s, client_s), "load": os.getloadavg()[0]}


def markdown(res):
    loc, dsk = res["local"], res["dask"]
    rows = [f"{res['mpix']:.0f} Mpix, {res['windows']} windows of {res['chunk']} px, "
            f"load {res['load']:.1f}; pixels identical: {res['identical']}", "",
            "| engine | wall s | client CPU s | worker CPU s | client peak MB | "
            "worker peak MB |", "|---|---|---|---|---|---|",
            f"| local (threads) | {loc['wall']:.1f} | {loc['client_cpu']:.1f} | - | "
            f"{loc['client_rss_mb']:.0f} | - |",
            f"| local:{res['workers']} | {dsk['wall']:.1f} | {dsk['client_cpu']:.1f} | "
            f"{dsk['worker_cpu']:.1f} | {dsk['client_rss_mb']:.0f} | "
            f"{dsk['worker_rss_mb']:.0f} |", "",
            f"Per window: workers {res['worker_s_per_window'] * 1000:.0f} ms, client "
            f"{res['client_s_per_window'] * 1000:.0f} ms; predicted speedup over one worker: "
            + ", ".join(f"{n} workers {s:.1f}x" for n, s in res["predicted_speedup"].items())]
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", type=int, default=1467)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--memory-mb", type=int, default=256)
    args = parser.parse_args(argv)
    res = run_case(tile=args.tile, workers=args.workers, chunk=args.chunk,
                   memory_mb=args.memory_mb)
    print(markdown(res))
    with open(os.path.join(HERE, "out", "results-dask.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    return 0 if res["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
