"""The Dask executor: windows rendered and compressed as tasks on a Dask cluster.

The plan is built once on the client and sent to the cluster once, pickled,
as the argument of a task that unpickles it (:func:`load_plan`): each worker
fetches its result once, from a peer, and when every copy is lost (the workers
holding it killed) the scheduler runs that task again. A scattered plan could
not be made again: Dask's memory manager keeps one copy of it (it drops
"superfluous" replicas even of a broadcast), and the worker holding that copy
killed, every window task was cancelled. Each task gets the plan and a few
neighbouring window numbers (``GROUP``), renders each window with
:func:`~..render.render_window` on a per-worker-thread :class:`~..render.Context`
(kept across tasks, keyed by the run), compresses it with the output's creation
options (:func:`.tiles.encode_window`) and, when it sees the client's partial,
appends the tiles to it itself and returns only where they are (:mod:`.shared`);
otherwise it returns the bytes and the client appends them. The client patches
the tile arrays (:class:`.tiles.RawTiles`) in window order and checkpoints, as
the local engine does. At most ``in_flight`` windows are
submitted and not yet written, so memory stays bounded on the client and the
workers.

``distributed`` is imported only here, and this module only when DASK_SCHEDULER
is set, so the plugin runs without Dask.
"""

import collections
import logging
import pickle
import socket
import threading
import time
import uuid

from osgeo import gdal

from .. import writer
from ..errors import Cancelled, ClusterError, OptionError
from ..gdalenv import thread_env
from ..options import PARAM_BY_ATTR, parse_dask
from ..render import Context, render_window
from . import shared
from .local import HANDLES_PER_THREAD
from .spawn import use_own_python
from .tiles import UNMOVABLE, RawTiles, encode_window

try:
    import distributed
except ImportError:  # the caller checks first, see executors.make
    distributed = None

# How long the client waits to reach a scheduler, or for a lost one to come back.
CONNECT_SECONDS = 10
# How long a local worker process may take to start and reach the scheduler.
START_SECONDS = 60
LOST_SECONDS = 30
FETCH_SECONDS = 15  # one attempt to fetch a finished task's result
POLL_SECONDS = 0.1
# Neighbouring windows per task, fewer when that would leave a worker without two tasks:
# each task costs the scheduler and this process a round trip, whatever its size.
GROUP = 8

_local = threading.local()


def _context(plan, key):
    """This worker thread's Context for the run ``key`` (the previous run's is closed).

    The worker's GDAL block cache gets the plan's budget then, as the local engine's
    process does: workers stay within MEMORY_MB too.
    """
    if getattr(_local, "key", None) != key:
        if getattr(_local, "ctx", None) is not None:
            _local.ctx.close()
        gdal.SetCacheMax(plan.budget.cache)
        _local.key, _local.ctx = key, Context(HANDLES_PER_THREAD)
    return _local.ctx


def load_plan(blob):
    """The plan, on a worker (a task, so the scheduler can run it again when lost)."""
    return pickle.loads(blob)


def render_task(plan, key, indices, sparse, target=None):
    """Render and compress windows ``indices`` on a worker; append their tiles to the
    partial when it sees the client's (``target``, a :class:`.shared.Target`).

    Returns
    -------
    (list, Exception or None)
        ``(payload, moved)`` of each window in order (its tiles, a
        :class:`.shared.Placed`, or None), up to the first that failed, and that
        failure (raised when it is the first window), so the client writes the
        windows before it, as the local engine does.
    """
    results = []
    for index in indices:
        try:
            results.append(_render_one(plan, key, index, sparse, target))
        except Exception as exc:
            if not results:
                raise
            return results, exc
    return results, None


def _render_one(plan, key, index, sparse, target):
    window = plan.windows[index]
    if sparse and not plan.index.sources_for(index):
        return None, 0
    with thread_env():
        array, moved = render_window(plan, window, _context(plan, key))
        if sparse and writer.unwritten(plan, array):
            return None, moved
        tiles = encode_window(plan, window, array, sparse)  # every tile checked
    del array
    placed = shared.place(target, tiles) if target is not None and tiles else None
    return placed or tiles, moved


class RawSink(RawTiles):
    """:class:`.tiles.RawTiles` with the engine's sink interface."""

    def write(self, window, payload):
        """A window's tiles, or where its worker appended them (:class:`.shared.Placed`)."""
        if isinstance(payload, shared.Placed):
            self.place(payload.places)
        else:
            RawTiles.write(self, payload)

    def close(self):
        try:
            RawTiles.close(self)
        except OSError as exc:  # a run ending on an error: the checkpoint still holds
            return [str(exc)]
        return []

    def close_checked(self):
        try:
            RawTiles.close(self)
        except OSError as exc:
            raise writer.output_error(self.path, exc, "closing the output failed") from None

    def damaged(self):
        return None  # tiles are only appended: none overlaps another


class DaskExecutor:
    """Submits windows as Dask tasks of ``group`` neighbours; results come back one window
    at a time, in submission order."""

    kind = "dask"

    def __init__(self, plan):
        self.plan = plan
        self.cluster = None
        self.python = None  # the interpreter of local workers, see spawn.use_own_python
        self.target = None  # set by open_sink: workers seeing the partial append to it
        self.value = plan.options.dask_scheduler
        kind, arg = parse_dask(self.value)
        compress = str(plan.creation_options.get("COMPRESS", "")).upper()
        if compress in UNMOVABLE:
            raise OptionError(PARAM_BY_ATTR["dask_scheduler"].flag(), f"COMPRESS={compress} "
                              "cannot be used with Dask: its tiles depend on tables in the "
                              "file's header; choose another compression or run locally")
        self.client = self._connect(kind, arg)
        try:
            workers = max(1, len(self.client.scheduler_info().get("workers", {})))
            self.group = max(1, min(GROUP, len(plan.windows) // (2 * workers)))
            # Two tasks per worker: one running, one queued behind it.
            tasks = max(-(-plan.budget.in_flight // self.group), 2 * workers + 2)
            self.in_flight = tasks * self.group
            # The first task of each worker holds one window: the first window (progress,
            # checkpoint) comes after one window's time, not a whole task's.
            self.singles = workers
            self.key = f"{uuid.uuid4().hex}"
            self.plan_future = self.client.submit(
                load_plan, pickle.dumps(plan, pickle.HIGHEST_PROTOCOL), pure=False,
                key=f"streaming-mosaic-{self.key}-plan")
        except Exception as exc:
            self.close()
            raise self._lost(exc) from None
        self.sparse = writer.sparse(plan)
        self.pending = collections.deque()  # (future, done event, first window) per task
        self.batch = []                     # windows submitted, not yet sent as a task
        self.results = collections.deque()  # the oldest task's windows not yet taken
        self.queued = 0                     # windows submitted and not yet taken

    def _connect(self, kind, arg):
        silence = logging.ERROR
        try:
            if kind == "local":
                self.python = use_own_python()
                self.cluster = distributed.LocalCluster(
                    n_workers=arg, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=silence, death_timeout=START_SECONDS)
                # The scheduler runs in this process: results come from the workers directly.
                return distributed.Client(self.cluster, set_as_default=False,
                                          direct_to_workers=True)
            client = distributed.Client(arg, timeout=CONNECT_SECONDS, set_as_default=False)
            client.direct_to_workers = _reachable(client)
            return client
        except Exception as exc:  # OSError, TimeoutError, distributed's comm errors
            if self.cluster is not None:
                self.cluster.close()
            what = (f"cannot start {self.value}'s worker processes with {self.python}"
                    if kind == "local" else f"cannot reach the Dask scheduler {self.value}")
            raise ClusterError(f"DASK_SCHEDULER (--dask): {what} ({_reason(exc)})") from None

    def _lost(self, exc):
        return ClusterError(f"DASK_SCHEDULER (--dask): lost the Dask scheduler {self.value} "
                            f"({_reason(exc)})")

    def open_sink(self, path, box):
        """Places the workers' compressed tiles in the partial (closed by GDAL first)."""
        writer.close_checked(box)
        sink = RawSink(path)
        self.target = sink.share()
        return sink

    def room(self):
        return self.queued < self.in_flight

    def submit(self, index):
        self.batch.append(index)
        self.queued += 1
        size = 1 if self.singles > 0 else self.group
        if len(self.batch) == size or index == len(self.plan.windows) - 1:
            self._send()

    def _send(self):
        # Earlier windows first: the client writes in window order and waits for the oldest,
        # so without priorities the workers ran later tasks first (Dask's default order is
        # not the submission order) and the first window of the 16k case came after 13 s.
        indices, self.batch = tuple(self.batch), []
        self.singles -= 1
        try:
            future = self.client.submit(
                render_task, self.plan_future, self.key, indices, self.sparse, self.target,
                pure=False, priority=-indices[0],
                key=f"streaming-mosaic-{self.key}-{indices[0]}")
            done = threading.Event()
            future.add_done_callback(lambda _future: done.set())
        except Exception as exc:  # the scheduler is gone
            raise self._lost(exc) from None
        self.pending.append((future, done, indices[0] + 1))

    def next(self, cancel):
        """The oldest submitted window's (payload, moved); re-raises its error."""
        if cancel():
            raise Cancelled()
        if not self.results:
            if not self.pending:
                self._send()  # the engine waits for a window still in the batch
            results, error = self._result(*self.pending[0], cancel)
            self.pending.popleft()
            self.results.extend(results)
            if error is not None:
                self.results.append(error)
        item = self.results.popleft()
        if isinstance(item, Exception):
            raise item
        self.queued -= 1
        return item

    def _result(self, future, done, first, cancel):
        """The result of one task, waiting for it while polling ``cancel`` and the scheduler."""
        stuck = None
        while True:
            self._wait(future, done, cancel)
            try:
                return future.result(timeout=FETCH_SECONDS)
            except Exception as exc:
                # A fetch from a worker killed meanwhile can hang while the scheduler still
                # says "finished" (seen 3 times in about 100 killed-worker runs, then not in
                # 245): fetch again, which asks the scheduler where the result is now, for
                # up to LOST_SECONDS.
                stuck = stuck or time.monotonic()
                if (isinstance(exc, TimeoutError) and future.status == "finished"
                        and self.client.status == "running"
                        and time.monotonic() - stuck < LOST_SECONDS):
                    continue
                if isinstance(exc, distributed.KilledWorker):
                    raise ClusterError(f"DASK_SCHEDULER (--dask): the Dask workers running "
                                       f"window {first} died ({_reason(exc)})") from None
                if future.status == "error":
                    raise  # the task's own error (an InputError, ...), as the local engine's
                running = self.client.status == "running"
                if running and future.status in ("pending", "lost"):
                    continue  # its result was lost with a worker: Dask computes it again
                if running and future.status == "cancelled":
                    raise ClusterError(f"DASK_SCHEDULER (--dask): the Dask scheduler cancelled "
                                       f"window {first} ({_reason(exc)})") from None
                raise self._lost(exc) from None

    def _wait(self, future, done, cancel):
        gone = None
        while future.status in ("pending", "lost"):
            if cancel():
                raise Cancelled()
            if self.client.status != "running":
                gone = gone or time.monotonic()
                if time.monotonic() - gone > LOST_SECONDS or self.client.status == "closed":
                    raise self._lost("the connection closed")
            else:
                gone = None
            if done.is_set():  # finished once, then lost with its worker: computed again
                time.sleep(POLL_SECONDS)
            else:
                done.wait(POLL_SECONDS)

    def close(self):
        """Cancel what is still queued or running; close the client (and a local cluster)."""
        try:
            if getattr(self, "pending", None):
                self.client.cancel([future for future, _done, _first in self.pending],
                                   force=True)
            self.pending = collections.deque()
        except Exception:  # the scheduler may be gone already
            pass
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close(timeout=5)
            except Exception:
                pass


def _reachable(client):
    """True when this process can connect to the workers: results are then fetched from
    them directly, not relayed by the scheduler (which would then carry every tile)."""
    try:
        addresses = list(client.scheduler_info().get("workers", {}))[:4]
        for address in addresses:
            host, _, port = address.split("://", 1)[-1].rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        return bool(addresses)
    except (OSError, ValueError):
        return False


def _reason(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."
