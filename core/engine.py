"""The pipeline: an executor renders windows, one writer stores them in order.

The executor (:mod:`.executors`) is this process's worker threads, or a Dask
cluster when DASK_SCHEDULER is set; either way the calling thread takes the
finished windows in window order and writes them into ``OUTPUT.partial``
through the executor's sink (GDAL for arrays, raw appends for tiles compressed
on Dask workers), checkpointing as it goes. Progress is reported once per
window; cancellation is checked while waiting for each window.

The front ends (QGIS algorithm, CLI) call :func:`run` with callbacks and turn
its typed errors into their own.
"""

import dataclasses
import os
import time

import numpy as np

from . import checkpoint, cog, executors, harmonize, overviews, pyramid, runlock, storage, writer
from .errors import Cancelled, ClusterError, InputError, MosaicError, OutputError
from .gdalenv import GdalFailure, cache_budget, release_free_memory, thread_env
from .memory import cog_cache
from .plan import make_plan, summary_lines
from .progress import WINDOWS_SHARE, Progress
from .runmemory import RunMemory, peak_rss_mb
from .runmemory import describe as describe_memory


@dataclasses.dataclass
class Result:
    """What a finished run reports."""

    output: str
    width: int
    height: int
    bands: int
    windows: int
    resumed_from: int
    seconds: float
    output_bytes: int
    peak_rss_mb: float  # of the whole process (in QGIS: QGIS's own peak too)
    moved_off_nodata: int
    warnings: list
    rss_before_mb: float = 0.0  # the process's resident memory when the run started
    run_peak_mb: float = 0.0    # its peak while the run lasted

    @property
    def mpix_per_s(self):
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)

    def summary(self):
        extra = f", resumed at window {self.resumed_from + 1}" if self.resumed_from else ""
        return (f"{self.windows} windows, {self.width * self.height / 1e6:.1f} Mpix in "
                f"{self.seconds:.1f} s ({self.mpix_per_s:.1f} Mpix/s, "
                f"{self.width * self.height * self.bands / 2**20 / max(self.seconds, 1e-9):.0f} "
                f"MB/s of samples), output {self.output_bytes / 2**20:.1f} MB, "
                f"{describe_memory(self.rss_before_mb, self.run_peak_mb, self.peak_rss_mb)}"
                f"{extra}")


# Share of the COG step's progress for the overview levels computed at the end.
TAIL_SHARE = 0.1
# Windows between two returns of freed memory to the system (see release_free_memory).
TRIM_EVERY = 4


def run(options, progress=None, cancel=None, log=None):
    """Run a mosaic job.

    Parameters
    ----------
    options : Options
    progress : callable(Progress), optional
        Called with a :class:`~.progress.Progress` once per window (and during
        overviews / COG).
    cancel : callable() -> bool, optional
        Polled between windows and while waiting for one.
    log : callable(message, level), optional
        Informational lines; level is "info" or "warning".

    Returns
    -------
    Result

    Raises
    ------
    MosaicError
        OptionError, InputError, OutputError or ResumeError with a one-line
        message (OutputError too when another run is writing OUTPUT); Cancelled
        when cancelled (the partial output is kept).
    """
    memory = RunMemory()
    progress = memory.wrap(progress or (lambda event: None))
    cancel = cancel or (lambda: False)
    log = log or (lambda message, level="info": None)
    started = time.monotonic()
    executors.check_installed(options)
    with thread_env():
        target = writer.check_output(options.output, options.inputs)
    # Where the partial, journal and lock live (a work folder for a remote OUTPUT).
    output = storage.work_path(target, options.work_folder)
    with runlock.exclusive(output), thread_env():
        try:
            plan, start = _plan_with_resume(options, output, log, cancel)
            for line in summary_lines(plan):
                log(line, "info")
            for warning in plan.warnings:
                log(warning, "warning")
            with cache_budget(plan.budget.cache):
                moved = _write_all(plan, output, start, progress, cancel, log,
                                   _long_finish(plan, output, target))
            # The windows' buffers are freed: the COG driver's step gets the memory.
            release_free_memory()
            with cache_budget(finish_cache(plan)):
                _finish(plan, output, progress, cancel, target)
        finally:
            # A COG copy left by this run or by a killed one: resume makes it again.
            cog.remove_cog_partial(output)
            pyramid.remove_temporary(checkpoint.partial_path(output))
        size = storage.size(target)
    if moved:
        log(f"{moved} valid pixel(s) equal to the nodata value {plan.nodata_out:g} were "
            "written as the nearest other value", "warning")
    return Result(target, plan.grid.width, plan.grid.height, plan.band_count, len(plan.windows),
                  start, time.monotonic() - started, size, peak_rss_mb(),
                  moved, list(plan.warnings), memory.before, memory.peak())


def finish_cache(plan):
    """GDAL's cache for the overviews and COG step (see memory.cog_cache)."""
    block = plan.block * plan.block * plan.out_bands * np.dtype(plan.out_dtype).itemsize
    return cog_cache(plan.budget, plan.threads, block)


def _plan_with_resume(options, output, log, cancel=None):
    plan = make_plan(options)
    journal = checkpoint.load(output) if options.resume else None
    if options.resume and (journal is None
                           or not os.path.exists(checkpoint.partial_path(output))):
        log("RESUME: no checkpoint found for this output; starting from the beginning")
        journal = None
    if journal is None:
        return harmonize.attach(plan, None, log, cancel), 0
    chunk = journal["fingerprint"].get("chunk")
    if not options.chunk_size and chunk and chunk != plan.budget.chunk:
        plan = make_plan(dataclasses.replace(options, chunk_size=chunk))
    plan = harmonize.attach(plan, journal, log, cancel)
    done, note = checkpoint.resume_point(journal, plan, output)
    if note:
        log(note)
    log(f"RESUME: {done} of {len(plan.windows)} windows already written")
    return plan, done


def _long_finish(plan, output, target):
    """True when finishing takes more than a rename (overviews, COG, an upload): only
    then is a journal saying every window is done worth its flush and fsyncs."""
    return bool(plan.options.cog or plan.options.overviews or output != target)


def _write_all(plan, output, start, progress, cancel, log, final_checkpoint=True):
    """Render and write windows ``start..`` into the partial; returns nodata moves.

    ``final_checkpoint``: record every window as done before closing. Without it a
    crash before the rename resumes from the last periodic checkpoint.
    """
    partial = checkpoint.partial_path(output)
    identity = checkpoint.fingerprint(plan)
    total = len(plan.windows)
    executor = executors.make(plan)
    try:
        box = _open_partial(plan, output, start, identity, executor.kind == "dask")
        sink = executor.open_sink(partial, box)
        if pyramid.streams(plan):
            sink = pyramid.Sink(sink, box, plan)
        elif overviews.streams(plan):
            sink = overviews.sink(sink, partial, plan)
    except BaseException:
        executor.close()
        raise
    state = {"done": start, "durable": start, "moved": 0}
    try:
        try:
            _drive(plan, executor, sink, state, progress, cancel,
                   lambda done: _checkpoint(sink, output, identity, done, total))
        finally:
            executor.close()
        if final_checkpoint:
            _checkpoint(sink, output, identity, total, total)
        _closed(sink, partial)
        return state["moved"]
    except (Cancelled, KeyboardInterrupt, ClusterError) as exc:
        _checkpoint(sink, output, identity, state["done"], total)
        sink.close()
        if isinstance(exc, ClusterError):
            raise ClusterError(f"{exc}; the partial output and its checkpoint ({state['done']} "
                               f"of {total} windows) were kept: run again with RESUME to "
                               "continue") from None
        raise Cancelled(
            f"{'interrupted' if isinstance(exc, KeyboardInterrupt) else 'cancelled'} after "
            f"{state['done']} of {total} windows; the partial output {partial} and its "
            "checkpoint were kept: run again with RESUME to continue, or delete "
            f"{os.path.basename(partial)}*", partial=partial) from None
    except OutputError as exc:
        _release(exc)
        sink.close()
        if state["durable"] > 0 and not sink.damaged():
            raise OutputError(exc.path, f"{exc.reason}; the partial output "
                              f"and its checkpoint ({state['durable']} of {total} windows) were "
                              f"kept: free space and run again with RESUME, or delete "
                              f"{os.path.basename(partial)}*") from None
        checkpoint.remove(output)
        if state["durable"] > 0:
            raise OutputError(exc.path, f"{exc.reason}; the failed write "
                              "damaged the partial output, so it was removed") from None
        raise
    except InputError as exc:
        _release(exc)
        raise _kept_after_read_error(exc, sink, plan, output, identity, state) from None
    except BaseException as exc:
        _release(exc)
        sink.close()
        checkpoint.remove(output)
        raise


def _drive(plan, executor, sink, state, progress, cancel, sync):
    """The loop: keep the executor busy, write its results in window order, report
    progress and checkpoint every ``checkpoint_seconds``."""
    total = len(plan.windows)
    share = WINDOWS_SHARE if plan.options.cog or plan.options.overviews else 1.0
    next_index = state["done"]
    last_sync = time.monotonic()
    while state["done"] < total:
        while next_index < total and executor.room():
            executor.submit(next_index)
            next_index += 1
        payload, moved = executor.next(cancel)
        if payload is not None:
            sink.write(plan.windows[state["done"]], payload)
        del payload
        state["moved"] += moved
        state["done"] += 1
        if state["done"] % TRIM_EVERY == 0:
            release_free_memory()
        progress(Progress("windows", state["done"], total, share * state["done"] / total))
        if time.monotonic() - last_sync >= plan.options.checkpoint_seconds:
            sync(state["done"])
            state["durable"] = state["done"]
            last_sync = time.monotonic()


def _kept_after_read_error(exc, sink, plan, output, identity, state):
    """Keep the windows written before an input failed to read, in a checkpoint that
    names the input, so RESUME continues once it is repaired; returns the error to raise.

    Nothing is kept when no window was written yet.
    """
    partial = checkpoint.partial_path(output)
    total = len(plan.windows)
    failed = [i for i, s in enumerate(plan.sources) if s.path == exc.path]
    done = state["done"]
    try:
        _checkpoint(sink, output, identity, done, total, failed)
    except (OutputError, OSError):
        done = state["durable"]  # the last checkpoint still holds
    sink.close()
    if not done:
        checkpoint.remove(output)
        return exc
    return InputError(exc.path, f"{exc.reason}; the partial output and its "
                      f"checkpoint ({done} of {total} windows) were kept: repair or replace "
                      f"the input and run again with RESUME, or delete {os.path.basename(partial)}*")


def _open_partial(plan, output, start, identity, empty=False):
    """The partial GeoTIFF in a one-item list: reopened to resume, or new.

    ``empty``: every tile left absent (SPARSE_OK), for a sink that appends tiles.

    A new GeoTIFF is closed once right away, which gives every tile an entry
    (GDAL writes one compressed empty tile for all, or extends an uncompressed
    file). A failed write later (full disk) then cannot make the closing GDAL
    place never-written tiles over the one being written, and the partial stays
    resumable; an uncompressed output that cannot get its size fails now. With
    SPARSE_OK GDAL places no tile on closing: the file stays small.
    """
    partial = checkpoint.partial_path(output)
    if start:
        return [writer.reopen(partial, plan)]
    checkpoint.remove(output)
    box = [writer.create(partial, plan, ["SPARSE_OK=TRUE"] if empty else [],
                         pyramid.partial_options(plan))]
    try:
        pyramid.prepare(box[0], plan)
        overviews.prepare(partial, plan)
    except GdalFailure as exc:
        writer.close(box)
        checkpoint.remove(output)
        raise writer.output_error(partial, exc, "creating the overview levels failed") from None
    writer.flush(box[0], partial)
    try:
        writer.close_checked(box)
    except GdalFailure as exc:
        checkpoint.remove(output)
        what = ("the COG's uncompressed intermediate (with its overviews)"
                if pyramid.streams(plan) else "an uncompressed output")
        raise OutputError(partial, f"cannot lay out the output's tiles ({exc}); {what} needs "
                          f"{pyramid.partial_bytes(plan) / 2**20:,.0f} MB: "
                          "check the free space and any file size limit") from None
    box.append(writer.reopen(partial, plan))
    writer.flush(box[0], partial)
    checkpoint.fsync_file(partial)
    checkpoint.write(output, identity, 0, len(plan.windows))
    return box


def _release(exc):
    """Clear the frames an error keeps alive: they hold the output dataset, which
    must close here, under the run's quiet GDAL error handler, not when the caller
    drops the error (GDAL would then print its own errors on stderr)."""
    import traceback  # here: it is a long import, and only a failed run needs it

    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__context__


def _closed(sink, partial):
    """Close the output; a failure to write what was cached is an OutputError."""
    try:
        sink.close_checked()
    except GdalFailure as exc:
        raise writer.output_error(partial, exc, "closing the output failed") from None


def _checkpoint(sink, output, identity, done, total, failed=()):
    sink.flush()
    checkpoint.write(output, identity, done, total, failed)


def _finish(plan, output, progress, cancel, target=None):
    """Overviews or COG, then move the finished file into place (``target``: where it
    goes when not at ``output``, e.g. object storage) and drop the journal."""
    partial = checkpoint.partial_path(output)
    opts = plan.options

    def sub(lo, hi=1.0):
        phase = "cog" if opts.cog else "overviews"
        return lambda f: progress(Progress(phase, 0, 0, lo + (hi - lo) * f))

    try:
        final = partial
        if opts.cog:
            final = cog.cog_partial_path(output)
            streamed = pyramid.streams(plan)
            try:
                # The levels not streamed (with Dask: all, from the compressed partial:
                # the same COG as the local engine's).
                lo = WINDOWS_SHARE + (1 - WINDOWS_SHARE) * (TAIL_SHARE if streamed else 0.5)
                source = pyramid.finish(partial, plan, sub(WINDOWS_SHARE, lo), cancel)
                cog.make_cog(source, final, plan, sub(lo), cancel, True, partial)
            except OutputError as exc:
                raise OutputError(output, f"{exc.reason}; the complete partial "
                                  f"output {partial} and its checkpoint were kept: run again with "
                                  "RESUME (after freeing space if needed) to make only the COG "
                                  "again") from None
        elif opts.overviews:
            overviews.finish(partial, plan, sub(WINDOWS_SHARE), cancel)
        writer.publish(final, target or output)
        checkpoint.remove(output)
    except MosaicError:
        raise
    except KeyboardInterrupt:
        raise Cancelled(f"interrupted while finishing; the complete partial output {partial} "
                        "was kept: run again with RESUME to finish it", partial=partial) from None
    except Exception as exc:  # a GDAL failure while cancelling
        if cancel():
            raise Cancelled(f"cancelled while finishing; the complete partial output {partial} "
                            "was kept: run again with RESUME to finish it", partial=partial) from None
        raise OutputError(output, str(exc)) from None
    progress(Progress("done", 0, 0, 1.0))
