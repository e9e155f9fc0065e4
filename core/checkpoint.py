"""The journal beside a partial output: which windows are durably written, for which job.

``OUTPUT.partial`` is the GeoTIFF being written and ``OUTPUT.partial.json``
its journal. Windows are written in order, so the journal only needs the
number of windows done. It is replaced atomically (write, fsync, rename,
fsync the folder) after the partial itself has been flushed and fsynced, so
after a crash the journal never claims more than the file holds.

The fingerprint ties a journal to one job: the inputs (path, bands, pixel box
on the grid, and size, mtime and ETag of every file each reads: see
:mod:`.inputfiles`), the grid, the method and every option that changes pixels
or layout.

When a run stops because an input failed to read, the journal names that
input (``failed``). It may then be repaired or replaced before resuming even
though its files changed: windows are redone from the first one that reads it
(the windows before never read it, so they hold the same pixels a fresh run
would write). Any other change refuses the resume.
"""

import json
import os

from . import __version__ as CORE_VERSION
from . import overviews, pyramid
from .errors import ResumeError

FORMAT = 2


def partial_path(output):
    return output + ".partial"


def journal_path(output):
    return output + ".partial.json"


def fingerprint(plan):
    """A JSON-able description of everything that decides the partial's bytes."""
    opts = plan.options
    co = {k: v for k, v in plan.creation_options.items() if k != "NUM_THREADS"}
    identity = {
        "format": FORMAT,
        "inputs": [[s.path, list(s.bands), list(spec.bbox) if spec else None,
                    [list(f) for f in s.files]] for s, spec in zip(plan.sources, plan.specs)],
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
    if pyramid.layout(plan) is not None:
        identity["partial"] = pyramid.layout(plan)  # the COG's intermediate (see pyramid)
    if overviews.layout(plan) is not None:
        identity["levels"] = overviews.layout(plan)  # OVERVIEWS' side file (see overviews)
    if getattr(plan, "harmony", None) is not None:
        # The fitted coefficients: a resumed run reuses them (see harmonize.attach).
        identity["harmonize"] = plan.harmony.to_json()
    return identity


def digest(identity):
    import hashlib  # here: it loads OpenSSL, which a run that does not resume never needs

    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


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


def resume_point(journal, plan, output):
    """The window to resume from, and a line for the log when it is not the journal's.

    Raises
    ------
    ResumeError
        Unless the journal belongs to this job (see the module docstring).
    """
    old, new = journal.get("fingerprint", {}), fingerprint(plan)
    done = int(journal["done"])
    if digest(old) == digest(new):
        return done, None
    failed = [i for i in journal.get("failed") or () if isinstance(i, int)]
    if failed and digest(_without_files(old, failed)) == digest(_without_files(new, failed)):
        names = ", ".join(plan.sources[i].name for i in failed if i < len(plan.sources))
        start = next((w for w in range(done)
                      if any(i in plan.index.sources_for(w) for i in failed)), done)
        return start, (f"RESUME: {names} changed since it failed to read; the windows from "
                       f"the first one reading it (window {start + 1}) are computed again")
    what = _first_difference(old, new)
    raise ResumeError(
        f"RESUME: the checkpoint of {output} was made by a different job ({what}); "
        f"run without RESUME to start over (this replaces {os.path.basename(partial_path(output))})")


def _without_files(identity, indices):
    """A copy of the fingerprint with the file fingerprints of some inputs left out."""
    inputs = [list(entry) for entry in identity.get("inputs", [])]
    for i in indices:
        if i < len(inputs) and inputs[i]:
            inputs[i][-1] = None
    return dict(identity, inputs=inputs)


def _first_difference(old, new):
    if old.get("format") != new.get("format"):
        return "older checkpoint format"
    old_inputs, new_inputs = old.get("inputs", []), new.get("inputs", [])
    if len(old_inputs) != len(new_inputs):
        return f"{len(old_inputs)} inputs then, {len(new_inputs)} now"
    for a, b in zip(old_inputs, new_inputs):
        name = os.path.basename(b[0]) or b[0]
        if a[0] != b[0]:
            return f"input {name} was {os.path.basename(a[0]) or a[0]}"
        if a[:-1] != b[:-1]:
            return f"input {name} has changed since"
        if a != b:
            return f"input {name} has changed since{_changed_file(a[-1], b[-1])}"
    for key in new:
        if old.get(key) != new.get(key):
            return f"different {key.replace('_', ' ')}"
    return "different options"


def _changed_file(old_files, new_files):
    """ ": its file NAME" for the first file read that changed, when it is not the input."""
    old_by_name = {f[0]: f for f in old_files}
    for index, entry in enumerate(new_files):
        if old_by_name.get(entry[0]) != entry:
            return "" if index == 0 else f": its file {entry[0]}"
    gone = [f[0] for f in old_files if f[0] not in {g[0] for g in new_files}]
    return f": it no longer reads {gone[0]}" if gone else ""


def write(output, identity, done, total, failed=()):
    """Atomically record that the first ``done`` windows are durable.

    ``failed``: indices of the inputs whose read failed, stopping the run.
    """
    path = journal_path(output)
    tmp = path + ".tmp"
    data = {"fingerprint": identity, "done": int(done), "total": int(total),
            "failed": list(failed), "version": CORE_VERSION}
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data))  # json.dump encodes in Python: 10x slower
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
    """Delete the partial output, its journal and its side file (missing files are fine)."""
    for path in (partial_path(output), journal_path(output), journal_path(output) + ".tmp",
                 overviews.side_path(partial_path(output))):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
