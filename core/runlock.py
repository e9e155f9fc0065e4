"""One run per OUTPUT: an exclusive lock on ``OUTPUT.partial.lock`` for the whole run.

Two runs writing one OUTPUT (two clicks, two batch rows) would delete or
overwrite each other's partial. The lock is ``flock`` on a file beside the
partial, holding the owner's pid: the kernel releases it when the process
dies, so a lock file left by a crash (``kill -9``) does not block a resume.
``flock`` locks belong to the open file, so two runs in one process (QGIS)
exclude each other too. The file is removed when the run ends.
"""

import contextlib
import errno
import os

from .errors import OutputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def lock_path(output):
    return output + ".partial.lock"


@contextlib.contextmanager
def exclusive(output):
    """Hold the lock of ``output`` for the block.

    Raises
    ------
    OutputError
        When another run holds it: "OUTPUT: is being written by another run, pid N".
    """
    path = lock_path(output)
    fd = _acquire(path, output)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # while still locked: the next run makes a new file
        os.close(fd)


def _acquire(path, output):
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(output, f"cannot create the lock file {path} ({exc.strerror})") \
                from None
        if not _try_lock(fd):
            pid = _read_pid(fd)
            os.close(fd)
            raise OutputError(output, "is being written by another run"
                              + (f", pid {pid}" if pid else ""))
        # The run that held it may have removed the file between our open and lock.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _try_lock(fd):
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
            return False
        raise
    return True


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except (OSError, AttributeError):
        return None
    return int(text) if text.isdigit() else None
