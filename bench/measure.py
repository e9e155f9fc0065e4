"""Running one tool as a child process: wall time, CPU time and peak RSS.

Peak RSS comes from ``/usr/bin/time -f %M`` of the child itself, never from
``ru_maxrss`` of a forked child (which can include the parent's pages), and
the wall time from the parent's monotonic clock around the whole command
(interpreter start-up included, for every tool alike). Dirty pages of the
previous run are synced before each run so one tool's write-back does not
land in the next tool's time.
"""

import os
import statistics
import subprocess
import tempfile
import time

TIME = "/usr/bin/time"


class ToolFailed(Exception):
    """A benchmarked command exited with a non-zero status."""


def run_child(cmd, cwd=None, env=None, output=None, timeout=3600):
    """Run ``cmd`` once; return {wall, rss_mb, user, sys, out_bytes}.

    Raises ToolFailed (with the tail of stderr) when the command fails.
    """
    if output:
        for suffix in ("", ".aux.xml", ".partial", ".partial.json"):
            if os.path.exists(output + suffix):
                os.remove(output + suffix)
    os.sync()
    fd, stats = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
    os.close(fd)
    try:
        full = [TIME, "-f", "%M %U %S", "-o", stats] + [str(c) for c in cmd]
        load = load_average()
        started = time.monotonic()
        proc = subprocess.run(full, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
        wall = time.monotonic() - started
        with open(stats) as fh:
            lines = [line for line in fh.read().splitlines() if line.strip()]
    finally:
        os.remove(stats)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise ToolFailed(f"exit {proc.returncode}: {' | '.join(tail)}")
    rss_kb, user, sys_ = lines[-1].split()
    out_bytes = os.path.getsize(output) if output and os.path.exists(output) else 0
    return {"wall": wall, "rss_mb": int(rss_kb) / 1024.0, "user": float(user),
            "sys": float(sys_), "out_bytes": out_bytes, "load": load}


def summarize(runs):
    """Median wall and CPU, max peak RSS over repeats."""
    if not runs:
        return None
    return {
        "wall": statistics.median(r["wall"] for r in runs),
        "wall_min": min(r["wall"] for r in runs),
        "wall_max": max(r["wall"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "cpu": statistics.median((r["user"] + r["sys"]) / max(r["wall"], 1e-9) for r in runs),
        "cpu_s": statistics.median(r["user"] + r["sys"] for r in runs),
        "out_bytes": runs[-1]["out_bytes"],
        "n": len(runs),
    }


def baseline_rss(python, env, code, repeats=3):
    """Median peak RSS (MB) of ``python -c code``."""
    return statistics.median(run_child([python, "-c", code], env=env)["rss_mb"]
                             for _ in range(repeats))


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def byte_compiled(env, pkg, python="/usr/bin/python3"):
    """``env`` with the package under ``pkg`` byte-compiled once into a cache of its own
    (PYTHONPYCACHEPREFIX), as an installed plugin or package is: a run then does not
    compile every module again (about 40 ms of CPU) when PYTHONDONTWRITEBYTECODE is set."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(pkg, ".pycache")
    code = os.path.join(pkg, "streaming_mosaic")
    targets = [os.path.join(code, name) for name in ("__init__.py", "__main__.py", "cli.py",
                                                      "core")]
    subprocess.run([python, "-m", "compileall", "-q", *targets], env=env, check=True)
    return env
