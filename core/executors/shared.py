"""Appending compressed tiles to the partial GeoTIFF, from the client or from the workers.

With Dask the client would otherwise receive every compressed byte and write it,
which limits it to a few workers. When a worker sees the client's partial (a local
cluster, or a shared file system mounted at the same path) it appends its window's
tiles itself and returns only where they are (:class:`Placed`); the client patches
the tile arrays and checkpoints (:class:`.tiles.RawTiles`).

Every append, the client's or a worker's, holds an exclusive ``lockf`` lock on the
file's first 2**62 bytes (local file systems and NFSv4) and a thread lock (POSIX
locks do not exclude the threads of one process), takes the file's end under it
and writes there: appends never overlap. A worker killed mid-write leaves only
bytes no tile array points at (its task runs again elsewhere).

Whether a worker sees the very file: the client appends a random token to the
partial (:func:`publish`) and every worker append first reads it back, under the
lock; another file of the same name, no file, or an unreadable one, and the worker
returns the bytes instead. Whether that client still writes the partial: it holds
a shared lock on one byte past 2**62 (the token's offset further) while the partial
is open, which the system drops when the client dies; a worker that could take it
writes nothing. The client also zeroes the token when it closes the partial
(:func:`revoke`). So a task still running after a cancel, or after the client was
killed (the next run may be resuming with the local engine, which appends without
locks), writes nothing more. (POSIX drops all of a process's locks on a file when it
closes any descriptor of it: the client must not open and close the partial meanwhile,
or its workers fall back to returning the bytes.)
"""

import contextlib
import fcntl
import os
import socket
import threading
from collections import namedtuple

TOKEN_BYTES = 16
APPENDS = 2**62  # appends lock bytes [0, APPENDS); a run's client holds one byte after
CLASSIC_LIMIT = 2**32
TOO_BIG = ("the partial output is a classic TIFF and would pass 4 GB; "
           "add the creation option BIGTIFF=YES")

_threads = threading.Lock()

# Where a worker appends: the partial's absolute path, the token and its offset,
# whether its tile arrays hold 32-bit offsets (a classic TIFF), and the client's
# (host, pid).
Target = namedtuple("Target", "path token_at token classic client")


class Placed:
    """A window's tiles as a worker appended them: ``{(plane, tx, ty): (offset, size)}``."""

    __slots__ = ("places",)

    def __init__(self, places):
        self.places = places


class LockError(OSError):
    """The file system does not lock files (then workers do not write to it)."""


class _Locked:
    """The thread lock, then an exclusive lock on the appends' range of the file ``fd``."""

    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        _threads.acquire()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, APPENDS)
        except OSError as exc:
            _threads.release()
            raise LockError(*exc.args) from None
        except BaseException:
            _threads.release()
            raise

    def __exit__(self, *exc):
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, APPENDS)
        finally:
            _threads.release()


def append(fd, tiles, classic, check=None, lock=True):
    """Append ``{(plane, tx, ty): bytes}`` at the end of the file ``fd``; return their places.

    ``check(fd)``: called under the lock first; when it returns False nothing is written
    and None is returned. ``lock``: False when no other process appends.

    Raises
    ------
    OSError
        The write failed, or a classic TIFF would pass 4 GB (:class:`LockError`: the
        file cannot be locked).
    """
    with _Locked(fd) if lock else contextlib.nullcontext():
        if check is not None and not check(fd):
            return None
        end = os.lseek(fd, 0, os.SEEK_END)
        buffers, places = [], {}
        for key, data in sorted(tiles.items()):
            if end & 1:  # TIFF data start on a word boundary
                buffers.append(b"\0")
                end += 1
            places[key] = (end, len(data))
            buffers.append(data)
            end += len(data)
        if classic and end >= CLASSIC_LIMIT:
            raise OSError(TOO_BIG)
        if buffers:
            write_all(fd, buffers, end - sum(len(b) for b in buffers))
    return places


def publish(fd, path, classic):
    """Append a new random token to the partial ``fd`` (at ``path``); return the
    :class:`Target` the workers append to. Synced, so that a worker on another
    machine (NFS: close-to-open) reads it."""
    token = os.urandom(TOKEN_BYTES)
    token_at = append(fd, {(0, 0, 0): token}, classic)[(0, 0, 0)][0]
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, APPENDS + token_at)  # held until fd closes
    os.fsync(fd)
    return Target(os.path.abspath(path), token_at, token, classic, _me())


def revoke(fd, target):
    """Zero the token: no worker appends to the partial after this returns."""
    with _Locked(fd):
        os.pwrite(fd, bytes(TOKEN_BYTES), target.token_at)


def place(target, tiles):
    """On a worker: append a window's tiles to the client's partial.

    Returns
    -------
    Placed or None
        None when this worker does not see the client's partial (the caller then
        returns the bytes).

    Raises
    ------
    OutputError
        The partial is the client's, and writing to it failed.
    """
    try:
        fd = os.open(target.path, os.O_RDWR)
    except OSError:
        return None
    try:
        places = append(fd, tiles, target.classic, lambda fd: _sees(fd, target))
    except LockError:
        return None
    except OSError as exc:
        from ..writer import output_error
        raise output_error(target.path, exc, "a worker writing its tiles failed") from None
    finally:
        os.close(fd)
    return None if places is None else Placed(places)


def _sees(fd, target):
    """True when ``fd`` is the client's partial and that client still has it open."""
    try:
        if os.pread(fd, TOKEN_BYTES, target.token_at) != target.token:
            return False
    except OSError:
        return False
    if target.client == _me():
        return True  # a worker thread in the client's process: its lock is ours
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, APPENDS + target.token_at)
    except OSError:
        return True  # the client holds it
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, APPENDS + target.token_at)
    return False


# Buffers per writev call (the system's IOV_MAX is 1024 on Linux).
_IOV_MAX = 512


def _me():
    return socket.gethostname(), os.getpid()


def write_all(fd, buffers, pos):
    """Write ``buffers`` one after the other at ``pos``, whatever the system writes at once."""
    for i in range(0, len(buffers), _IOV_MAX):
        part = buffers[i:i + _IOV_MAX]
        total = sum(len(b) for b in part)
        n = os.pwritev(fd, part, pos) if hasattr(os, "pwritev") else 0
        if n < total:  # rare: the rest, one buffer at a time
            view = memoryview(b"".join(part))[n:]
            while view:
                m = os.pwrite(fd, view, pos + n)
                view, n = view[m:], n + m
        pos += total
