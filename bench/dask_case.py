#!/usr/bin/python3
"""The ``dask`` case: DASK_SCHEDULER against the local engine on the bench's data.

    /usr/bin/python3 bench/dask_case.py [--tile 1467] [--workers 2] [--chunk 512]
    /usr/bin/python3 bench/run.py --only dask          # the same, from the bench

Three runs, each in a child process: the local engine; ``local:N`` (the Dask
scheduler runs in the client process); and ``tcp://`` to a scheduler and N
workers started here as separate processes, so the client's, the scheduler's and
the workers' CPU seconds are each their own. CPU seconds are read from /proc at
the first and the last window, so the per-window figures are the steady state,
without starting the cluster (reported apart: ``startup``) and stopping it.

A window costs ``max(worker_s / N, client_s, scheduler_s)`` of wall time with N
workers, so the predicted speedup over one worker is ``worker_s`` divided by that;
the client (or the scheduler) saturates at ``worker_s / client_s`` workers.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

PY = "/usr/bin/python3"

CHILD = r"""
import json, os, resource, sys, time
import streaming_mosaic

def cpu_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def descendants(root):
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found

def sample(args):
    workers = args["worker_pids"] or descendants(os.getpid())
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"client": me.ru_utime + me.ru_stime, "workers": sum(map(cpu_of, workers)),
            "scheduler": cpu_of(args["scheduler_pid"]) if args["scheduler_pid"] else 0.0,
            "t": time.monotonic()}

def main():
    args = json.loads(sys.argv[1])
    if args.get("fallback"):  # workers are sent a token they cannot verify: they return bytes
        from streaming_mosaic.core.executors import shared
        publish = shared.publish
        shared.publish = lambda *a: publish(*a)._replace(token=os.urandom(shared.TOKEN_BYTES))
    marks = {}
    def progress(e):
        if e.phase == "windows" and e.done in (1, e.total) and e.done not in marks:
            marks[e.done] = sample(args)
    t0, before = time.monotonic(), sample(args)
    r = streaming_mosaic.mosaic(args["inputs"], args["output"], chunk_size=args["chunk"],
                                memory_mb=args["memory_mb"], dask_scheduler=args["dask"],
                                progress=progress)
    wall = time.monotonic() - t0
    end = sample(args)
    first, last = marks[1], marks[r.windows]
    steady = {k: (last[k] - first[k]) / max(r.windows - 1, 1) for k in first}
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Workers started apart ran the earlier runs too: only this run's CPU seconds.
    workers = end["workers"] - before["workers"] if args["worker_pids"] else \
        kids.ru_utime + kids.ru_stime
    print(json.dumps({
        "wall": wall, "startup": first["t"] - t0, "streaming": last["t"] - first["t"],
        "windows": r.windows, "mpix": r.width * r.height / 1e6,
        "client_cpu": me.ru_utime + me.ru_stime, "worker_cpu": workers,
        "scheduler_cpu": end["scheduler"],
        "steady_client": steady["client"], "steady_workers": steady["workers"],
        "steady_scheduler": steady["scheduler"], "steady_wall": steady["t"],
        "client_rss_mb": me.ru_maxrss / 1024, "worker_rss_mb": kids.ru_maxrss / 1024}))

if __name__ == "__main__":  # Dask's LocalCluster starts its workers by importing __main__
    main()
"""


def _package_parent():
    """A folder with a ``streaming_mosaic`` link to the checkout (as the tests make)."""
    parent = tempfile.mkdtemp(prefix="sm-bench-")
    os.symlink(ROOT, os.path.join(parent, "streaming_mosaic"))
    return parent


def run_one(inputs, output, chunk, memory_mb, dask, parent, cluster=None, fallback=False):
    env = dict(os.environ, PYTHONPATH=parent)
    arg = json.dumps({"inputs": inputs, "output": output, "chunk": chunk,
                      "memory_mb": memory_mb, "dask": dask, "fallback": fallback,
                      "scheduler_pid": cluster.scheduler.pid if cluster else None,
                      "worker_pids": [w.pid for w in cluster.workers] if cluster else None})
    script = os.path.join(parent, "dask_child.py")
    with open(script, "w") as fh:
        fh.write(CHILD)
    proc = subprocess.run([PY, script, arg], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def identical(a, b):
    import numpy as np
    from osgeo import gdal
    return np.array_equal(gdal.Open(a).ReadAsArray(), gdal.Open(b).ReadAsArray())


class Cluster:
    """A Dask scheduler and ``workers`` single-threaded workers on 127.0.0.1, as processes."""

    def __init__(self, workers, parent):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=parent)
        self.log = open(os.path.join(parent, "cluster.log"), "w")

        def start(module, *args):
            return subprocess.Popen([PY, "-m", module, *args], env=env, stdout=self.log,
                                    stderr=subprocess.STDOUT)
        self.scheduler = start("distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(self.port), "--dashboard-address", ":0")
        self.workers = [start("distributed.cli.dask_worker", self.address, "--nthreads", "1",
                              "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", ":0")
                        for _ in range(workers)]
        import distributed
        deadline = time.monotonic() + 120
        while True:
            try:
                with distributed.Client(self.address, timeout=10) as client:
                    client.wait_for_workers(workers, timeout=120)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def idle_rate(self, seconds=3.0):
        """The scheduler's CPU seconds per second with no job (heartbeats, memory manager)."""
        before = _cpu_of(self.scheduler.pid)
        time.sleep(seconds)
        return (_cpu_of(self.scheduler.pid) - before) / seconds

    def stop(self):
        for proc in self.workers + [self.scheduler]:
            proc.terminate()
        for proc in self.workers + [self.scheduler]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # a worker stuck reconnecting, seen under load
                proc.kill()
                proc.wait()
        self.log.close()


def _cpu_of(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def predict(worker_s, busiest_s, counts=(8, 32, 128)):
    """Speedup over one worker at each worker count (see the module docstring)."""
    return {n: worker_s / max(worker_s / n, busiest_s, 1e-9) for n in counts}


def run_case(tile=1467, grid=3, workers=2, chunk=512, memory_mb=256, noise=0.002,
             fallback=False):
    """The runs; ``fallback``: also ``tcp://`` with the workers returning the bytes (as
    when they cannot see the partial), right after the ``tcp://`` run with direct writes."""
    import data
    info = data.mosaic_set(grid=grid, tile=tile, overlap=200, noise=noise)
    inputs = [os.path.join(info["folder"], p) if not os.path.isabs(p) else p
              for p in info["inputs"]]
    parent = _package_parent()
    out = os.path.join(data.OUT, "runs", "dask")
    os.makedirs(out, exist_ok=True)
    path = {name: os.path.join(out, f"{name}.tif")
            for name in ("local", "dask", "tcp", "fallback")}
    load = [os.getloadavg()[0]]
    local = run_one(inputs, path["local"], chunk, memory_mb, None, parent)
    dask = run_one(inputs, path["dask"], chunk, memory_mb, f"local:{workers}", parent)
    cluster = Cluster(workers, parent)
    try:
        idle = cluster.idle_rate()
        tcp = run_one(inputs, path["tcp"], chunk, memory_mb, cluster.address, parent, cluster)
        back = run_one(inputs, path["fallback"], chunk, memory_mb, cluster.address, parent,
                       cluster, True) if fallback else None
    finally:
        cluster.stop()
    load.append(os.getloadavg()[0])
    same = all(identical(path["local"], path[name])
               for name in ("dask", "tcp") + (("fallback",) if back else ()))
    worker_s = tcp["steady_workers"]  # every worker's CPU seconds per window
    client_s = tcp["steady_client"]
    # The scheduler's background work is per second, not per window: on this slow machine
    # it would look like most of its cost per window.
    scheduler_s = max(tcp["steady_scheduler"] - idle * tcp["steady_wall"], 0.0)
    streaming = dask["steady_client"] + dask["steady_workers"]
    return {"mpix": local["mpix"], "windows": local["windows"], "chunk": chunk,
            "workers": workers, "local": local, "dask": dask, "tcp": tcp, "identical": same,
            "worker_s_per_window": worker_s, "client_s_per_window": client_s,
            "scheduler_s_per_window": scheduler_s, "scheduler_idle_cpu_per_s": idle,
            "client_share_streaming": dask["steady_client"] / max(streaming, 1e-9),
            "client_share_run": dask["client_cpu"] / max(dask["client_cpu"]
                                                         + dask["worker_cpu"], 1e-9),
            "wall_ratio": dask["wall"] / local["wall"],
            "streaming_ratio": dask["streaming"] / local["streaming"],
            "saturates_at": worker_s / max(client_s, scheduler_s, 1e-9),
            "predicted_speedup": predict(worker_s, max(client_s, scheduler_s)),
            "load": max(load), "fallback": back,
            "fallback_client_s_per_window": back["steady_client"] if back else None}


def markdown(res):
    loc, dsk, tcp = res["local"], res["dask"], res["tcp"]
    rows = [f"{res['mpix']:.0f} Mpix, {res['windows']} windows of {res['chunk']} px, "
            f"load average up to {res['load']:.1f}; pixels identical: {res['identical']}", "",
            "| engine | wall s | start-up s | windows s | client CPU s | worker CPU s | "
            "client peak MB | worker peak MB |", "|---|---|---|---|---|---|---|---|"]
    runs = [("local (threads)", loc), (f"`local:{res['workers']}`", dsk),
            (f"`tcp://` + {res['workers']} workers", tcp)]
    if res.get("fallback"):
        runs.append(("`tcp://`, workers return bytes", res["fallback"]))
    for name, r in runs:
        workers = (f"{r['worker_cpu']:.1f} | " if r is not loc else "- | ") + (
            f"{r['client_rss_mb']:.0f} | " + (f"{r['worker_rss_mb']:.0f} |" if r is not loc else "- |"))
        rows.append(f"| {name} | {r['wall']:.1f} | {r['startup']:.1f} | {r['streaming']:.1f} | "
                    f"{r['client_cpu']:.1f} | {workers}")
    rows += ["", f"`local:{res['workers']}` / local: wall {res['wall_ratio']:.2f}x, while "
             f"windows stream {res['streaming_ratio']:.2f}x; the client's share of the CPU "
             f"seconds while windows stream {res['client_share_streaming']:.0%} (whole run "
             f"{res['client_share_run']:.0%}).",
             f"Per window (`tcp://`, steady state): workers {res['worker_s_per_window'] * 1000:.0f}"
             f" ms, client {res['client_s_per_window'] * 1000:.1f} ms, scheduler "
             f"{res['scheduler_s_per_window'] * 1000:.1f} ms (after its background work, "
             f"{res['scheduler_idle_cpu_per_s'] * 1000:.0f} ms per second): saturates at about "
             f"{res['saturates_at']:.0f} workers; predicted speedup over one worker: "
             + ", ".join(f"{n} workers {s:.1f}x" for n, s in res["predicted_speedup"].items())]
    if res.get("fallback"):
        back = res["fallback_client_s_per_window"]
        rows.append(f"Workers returning the bytes (no shared partial): client {back * 1000:.1f} ms "
                    f"per window, saturating at about {res['worker_s_per_window'] / back:.0f} "
                    "workers.")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", type=int, default=1467)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--fallback", action="store_true",
                        help="also run tcp:// with the workers returning the bytes")
    args = parser.parse_args(argv)
    res = run_case(tile=args.tile, workers=args.workers, chunk=args.chunk,
                   memory_mb=args.memory_mb, fallback=args.fallback)
    print(markdown(res))
    with open(os.path.join(HERE, "out", "results-dask.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    return 0 if res["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
