"""Typed errors of the streaming core.

Every error a user can cause derives from :class:`MosaicError` and carries a
message that names the file or option at fault, ready to show as one line
(QgsProcessingException in QGIS, exit status 2 in the CLI). Anything else that
escapes the core is a bug.

They also fit Python's own families, so a caller can catch them the usual way:
:class:`OptionError` is a ``ValueError``; :class:`InputError` and
:class:`OutputError` are ``OSError`` s. The option or path at fault is an attribute
(``option``, ``path``) and ``reason`` is the message without it.
"""


class MosaicError(Exception):
    """Base class of every user-facing error of the mosaic core.

    The message is always one line: GDAL's own messages (quoted in ours) can span
    several ("... May be caused by: ...") and are folded.
    """

    def __init__(self, message=""):
        super().__init__(" ".join(str(message).split()))


class OptionError(MosaicError, ValueError):
    """An option has an invalid value; the message names the option."""

    def __init__(self, option, message):
        self.option = option
        self.reason = " ".join(str(message).split())
        super().__init__(f"{option}: {message}")

    def __reduce__(self):  # picklable: errors travel back from Dask workers
        return type(self), (self.option, self.reason)


class _PathError(MosaicError, OSError):
    def __init__(self, path, message):
        self.path = path
        self.reason = " ".join(str(message).split())
        MosaicError.__init__(self, f"{path}: {message}")

    def __str__(self):  # OSError's own __str__ would show (errno, strerror)
        return self.args[0]

    def __reduce__(self):  # picklable: errors travel back from Dask workers
        return type(self), (self.path, self.reason)


class InputError(_PathError):
    """An input raster is missing, unreadable or incompatible; names the file."""


class OutputError(_PathError):
    """The output cannot be written (path, permissions, full disk...)."""


class GdalFailure(Exception):
    """A GDAL call failed; ``str()`` is GDAL's own message (the core turns it into one of
    the errors above before it reaches a caller)."""


class ResumeError(MosaicError):
    """RESUME was asked but the checkpoint does not belong to this job."""


class ClusterError(MosaicError):
    """The Dask scheduler given by DASK_SCHEDULER cannot be reached or was lost, or
    Dask is not installed; names DASK_SCHEDULER."""


class Cancelled(MosaicError):
    """The run was cancelled; a resumable partial output may have been kept."""

    def __init__(self, message="cancelled", partial=None):
        self.partial = partial
        super().__init__(message)
