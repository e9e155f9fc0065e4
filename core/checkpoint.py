"""The journal beside a partial output: which windows are durably written, for which job.

``OUTPUT.partial`` is the GeoTIFF being written and ``OUTPUT.partial.json``
its journal. Windows are written in order, so the journal only needs the
number of windows done. It is replaced atomically (write, fsync, rename,
fsync the folder) after the partial itself has been flushed and fsynced, so
after a crash the journal never claims more than the file holds.

The fingerprint ties a journal to one job: the inputs (path, size, mtime),
the grid, the method and every option that changes pixels or layout.
"""

import hashlib
import json
import os

from . import __version__ as CORE_VERSION
from .errors import ResumeError

FORMAT = 1


def partial_path(output):
    return output + ".partial"


def journal_path(output):
    return output + ".partial.json"


def fingerprint(plan):
    """A JSON-able description of everything that decides the partial's bytes."""
    opts = plan.options
    co = {k: v for k, v in plan.creation_options.items() if k != "NUM_THREADS"}
    return {
        "format": FORMAT,
        "inputs": [[s.path, s.file_size, s.mtime_ns, list(s.bands)] for s in plan.sources],
        "grid": [plan.grid.crs_wkt, list(plan.grid.geotransform), plan.grid.width,
                 plan.grid.height],
        "method": plan.method,
        "feather_distance": plan.feather_distance if plan.method == "feather" else None,
        "percentile": opts.percentile if plan.method == "percentile" else None,
        "resampling": opts.resampling,
        "nodata_input": plan.nodata_input,
        "nodata_output": plan.nodata_out,
        "dtype": plan.out_dtype,
        "creation_options": co,
        "chunk": plan.budget.chunk,
        "windows": len(plan.windows),
    }


def digest(print_):
    return hashlib.sha256(json.dumps(print_, sort_keys=True).encode()).hexdigest()


def load(output):
    """The journal of ``output``'s partial, or None when there is none (or it is unreadable)."""
    path = journal_path(output)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "fingerprint" not in data or "done" not in data:
        return None
    return data


def verify(journal, print_, output):
    """Raise :class:`ResumeError` unless the journal belongs to this job."""
    old = journal.get("fingerprint", {})
    if digest(old) == digest(print_):
        return
    what = _first_difference(old, print_)
    raise ResumeError(
        f"RESUME: the checkpoint of {output} was made by a different job ({what}); "
        f"run without RESUME to start over (this replaces {os.path.basename(partial_path(output))})")


def _first_difference(old, new):
    if old.get("format") != new.get("format"):
        return "older checkpoint format"
    old_inputs, new_inputs = old.get("inputs", []), new.get("inputs", [])
    if len(old_inputs) != len(new_inputs):
        return f"{len(old_inputs)} inputs then, {len(new_inputs)} now"
    for a, b in zip(old_inputs, new_inputs):
        if a[0] != b[0]:
            return f"input {os.path.basename(b[0])} was {os.path.basename(a[0])}"
        if a != b:
            return f"input {os.path.basename(b[0])} has changed since"
    for key in new:
        if old.get(key) != new.get(key):
            return f"different {key.replace('_', ' ')}"
    return "different options"


def write(output, print_, done, total):
    """Atomically record that the first ``done`` windows are durable."""
    path = journal_path(output)
    tmp = path + ".tmp"
    data = {"fingerprint": print_, "done": int(done), "total": int(total),
            "version": CORE_VERSION}
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder
    finally:
        os.close(fd)


def remove(output):
    """Delete the partial output and its journal (missing files are fine)."""
    for path in (partial_path(output), journal_path(output), journal_path(output) + ".tmp"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
