"""The local executor: windows rendered by worker threads of this process.

``THREADS`` workers each own their GDAL handles (datasets are not thread-safe)
and render windows (:func:`~..render.render_window`); the engine takes the
results in window order and writes them with :class:`GdalSink`, the GeoTIFF
driver compressing tiles on ``NUM_THREADS`` threads. At most ``in_flight``
windows are submitted ahead; finished windows go into recycled flat buffers, so
at most ``in_flight + 1`` exist.

With several threads and no halo, every window is cut into one band of rows per
thread (:func:`~..windows.row_bands`) and thread k renders band k of every window:
an input block straddling two windows side by side is then decoded once, by the
thread whose datasets cached it for the window before (with whole windows per
thread, neighbours went to different threads and each decoded it: on GDAL 3.13,
256 Mpix, 0.6 s of 22 s CPU). With a halo (feather) whole windows go to whichever
thread is free.
"""

import collections
import concurrent.futures
import queue
import threading

import numpy as np

from .. import checkpoint, writer
from ..direct import window_part
from ..errors import Cancelled
from ..gdalenv import thread_env
from ..render import Context, render_window
from ..windows import Window, row_bands

try:
    import resource
except ImportError:  # Windows
    resource = None

# Open datasets kept per worker thread: each holds decoder state and buffers (about
# half a MB for a tiled GeoTIFF behind a VRT), so the cap is part of the memory budget.
HANDLES_PER_THREAD = 16


def open_files_per_thread(threads):
    """How many datasets each of ``threads`` workers may keep open."""
    limit = 1024
    if resource is not None:
        try:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ValueError, OSError):
            pass
    return max(4, min(HANDLES_PER_THREAD, (limit - 64) // (2 * max(threads, 1))))


class GdalSink:
    """Writes finished windows (arrays) into the partial through GDAL."""

    def __init__(self, box, path):
        self.box, self.path = box, path

    def write(self, window, array):
        writer.write_window(self.box[0], self.path, window, array)

    def flush(self):
        writer.flush(self.box[0], self.path)
        checkpoint.fsync_file(self.path)

    def close(self):
        return writer.close(self.box)

    def close_checked(self):
        writer.close_checked(self.box)

    def damaged(self):
        return writer.damaged_blocks(self.path)


class LocalExecutor:
    """Renders windows on a thread pool; results come back in submission order."""

    kind = "local"

    def __init__(self, plan):
        self.plan = plan
        self.stop = threading.Event()
        self.contexts, self.lock, self.local = [], threading.Lock(), threading.local()
        self.max_open = open_files_per_thread(plan.threads)
        self.buffers = queue.SimpleQueue()
        self.full = plan.out_bands * plan.budget.chunk * plan.budget.chunk
        self.sparse = writer.sparse(plan)
        self.pending = collections.deque()
        self.held = None
        self.banded = plan.threads > 1 and not plan.halo
        if self.banded:
            self.pool = _AffineThreads(plan.threads, "streaming-mosaic", self._init_worker)
        else:
            self.pool = concurrent.futures.ThreadPoolExecutor(plan.threads, "streaming-mosaic",
                                                              initializer=self._init_worker)

    def _init_worker(self):
        self.local.env = thread_env()
        self.local.env.__enter__()  # lives as long as the worker thread
        self.local.ctx = Context(self.max_open, self.stop)
        with self.lock:
            self.contexts.append(self.local.ctx)

    def _task(self, index):
        plan = self.plan
        window = plan.windows[index]
        if self.sparse and not plan.index.sources_for(index):
            return None, 0, None  # SPARSE_OK: an empty window is not written
        buf, out = self._window_buffer(window)
        array, moved = render_window(plan, window, self.local.ctx, out)
        if self.sparse and writer.unwritten(plan, array):
            return None, moved, buf
        return array, moved, buf

    def _window_buffer(self, window):
        """A recycled flat buffer (or a new one) and its (bands, h, w) view for ``window``."""
        plan = self.plan
        try:
            buf = self.buffers.get_nowait()
        except queue.Empty:
            buf = np.empty(self.full, plan.out_dtype)
        return buf, buf[:plan.out_bands * window.h * window.w].reshape(
            plan.out_bands, window.h, window.w)

    def _band(self, window, r0, r1, out):
        """Render rows ``r0:r1`` of ``window`` into those rows of ``out``; returns moved."""
        view = out[:, r0:r1]
        part = Window(window.index, window.x, window.y + r0, window.w, r1 - r0)
        array, moved = render_window(self.plan, part, self.local.ctx, view)
        if array is not view:
            np.copyto(view, array)
        return moved

    def _submit_banded(self, index):
        plan = self.plan
        window = plan.windows[index]
        ids = plan.index.sources_for(index)
        if self.sparse and not ids:
            done = concurrent.futures.Future()
            done.set_result(0)
            return [done], None, None  # SPARSE_OK: an empty window is not written
        buf, out = self._window_buffer(window)
        block, origin = _cut_guide(plan, window, ids)
        bands = row_bands(window.h, plan.threads, window.y, block, origin)
        return ([self.pool.submit_to(k, self._band, window, r0, r1, out)
                 for k, (r0, r1) in enumerate(bands)], buf, out)

    def open_sink(self, path, box):
        """The writer of this executor's results, given the partial opened by GDAL."""
        return GdalSink(box, path)

    def room(self):
        return len(self.pending) < self.plan.budget.in_flight

    def submit(self, index):
        if self.banded:
            self.pending.append(self._submit_banded(index))
        else:
            self.pending.append(self.pool.submit(self._task, index))

    def next(self, cancel):
        """The oldest submitted window's (array or None, moved); re-raises its error."""
        if self.held is not None:
            self.buffers.put(self.held)  # the engine has written it by now
            self.held = None
        if self.banded:
            futures, buf, out = self.pending[0]
            moved = sum(_result(f, cancel) for f in futures)
            self.pending.popleft()
            self.held = buf
            if out is None or (self.sparse and writer.unwritten(self.plan, out)):
                return None, moved
            return out, moved
        array, moved, self.held = _result(self.pending[0], cancel)
        self.pending.popleft()
        return array, moved

    def close(self):
        """Stop the workers (cancelling what has not started) and close their datasets."""
        self.stop.set()
        for entry in self.pending:
            for fut in (entry[0] if self.banded else (entry,)):
                fut.cancel()
        self.pool.shutdown(wait=True)
        for ctx in self.contexts:
            ctx.close()
        # The recycled window buffers: the pool's initializer keeps this executor
        # alive until a garbage collection, and the COG step needs their memory.
        self.held, self.pending = None, collections.deque()
        while not self.buffers.empty():
            self.buffers.get_nowait()


def _result(future, cancel):
    """``future``'s result, checking ``cancel`` every 0.1 s while waiting."""
    while True:
        if cancel():
            raise Cancelled()
        try:
            return future.result(timeout=0.1)
        except concurrent.futures.TimeoutError:
            continue


def _cut_guide(plan, window, ids):
    """(block rows, grid row of its row 0) of the input covering most of ``window``, to cut
    its bands on; (0, 0) when that input's blocks are unknown (warped, VRT)."""
    best, area = None, 0
    for i in ids:
        part = window_part(plan.specs[i].bbox, window)
        a = (part[2] - part[0]) * (part[3] - part[1]) if part else 0
        if a > area:
            best, area = plan.specs[i], a
    if best is None or best.kind != "direct" or best.block_rows <= 1:
        return 0, 0
    return best.block_rows, best.origin[1]


class _AffineThreads:
    """Worker threads with a queue each: a job given to thread k runs on thread k."""

    def __init__(self, count, name, initializer):
        self.queues = [queue.SimpleQueue() for _ in range(count)]
        self.threads = [threading.Thread(target=self._loop, args=(q, initializer),
                                         name=f"{name}_{k}", daemon=True)
                        for k, q in enumerate(self.queues)]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _loop(jobs, initializer):
        failed = None
        try:
            initializer()
        except BaseException as exc:  # every job of this thread fails with it
            failed = exc
        while True:
            job = jobs.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if failed is not None:
                    raise failed
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def submit_to(self, k, fn, *args):
        future = concurrent.futures.Future()
        self.queues[k].put((future, fn, args))
        return future

    def shutdown(self, wait=True):
        for jobs in self.queues:
            jobs.put(None)
        if wait:
            for thread in self.threads:
                thread.join()
