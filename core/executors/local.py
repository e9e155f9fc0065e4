"""The local executor: windows rendered by worker threads of this process.

``THREADS`` workers each own their GDAL handles (datasets are not thread-safe)
and render windows (:func:`~..render.render_window`); the engine takes the
results in window order and writes them with :class:`GdalSink`, the GeoTIFF
driver compressing tiles on ``NUM_THREADS`` threads. At most ``in_flight``
windows are submitted ahead; finished windows go into recycled flat buffers, so
at most ``in_flight + 1`` exist.
"""

import collections
import concurrent.futures
import queue
import threading

import numpy as np

from .. import checkpoint, writer
from ..errors import Cancelled
from ..gdalenv import thread_env
from ..render import Context, render_window

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
        try:
            buf = self.buffers.get_nowait()
        except queue.Empty:
            buf = np.empty(self.full, plan.out_dtype)
        out = buf[:plan.out_bands * window.h * window.w].reshape(
            plan.out_bands, window.h, window.w)
        array, moved = render_window(plan, window, self.local.ctx, out)
        if self.sparse and writer.unwritten(plan, array):
            return None, moved, buf
        return array, moved, buf

    def open_sink(self, path, box):
        """The writer of this executor's results, given the partial opened by GDAL."""
        return GdalSink(box, path)

    def room(self):
        return len(self.pending) < self.plan.budget.in_flight

    def submit(self, index):
        self.pending.append(self.pool.submit(self._task, index))

    def next(self, cancel):
        """The oldest submitted window's (array or None, moved); re-raises its error."""
        if self.held is not None:
            self.buffers.put(self.held)  # the engine has written it by now
            self.held = None
        future = self.pending[0]
        while True:
            if cancel():
                raise Cancelled()
            try:
                array, moved, self.held = future.result(timeout=0.1)
                break
            except concurrent.futures.TimeoutError:
                continue
        self.pending.popleft()
        return array, moved

    def close(self):
        """Stop the workers (cancelling what has not started) and close their datasets."""
        self.stop.set()
        for fut in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True)
        for ctx in self.contexts:
            ctx.close()
        # The recycled window buffers: the pool's initializer keeps this executor
        # alive until a garbage collection, and the COG step needs their memory.
        self.held, self.pending = None, collections.deque()
        while not self.buffers.empty():
            self.buffers.get_nowait()
