"""Typed errors of the streaming core.

Every error a user can cause derives from :class:`MosaicError` and carries a
message that names the file or option at fault, ready to show as one line
(QgsProcessingException in QGIS, exit status 2 in the CLI). Anything else that
escapes the core is a bug.
"""


class MosaicError(Exception):
    """Base class of every user-facing error of the mosaic core.

    The message is always one line: GDAL's own messages (quoted in ours) can span
    several ("... May be caused by: ...") and are folded.
    """

    def __init__(self, message=""):
        super().__init__(" ".join(str(message).split()))


class OptionError(MosaicError):
    """An option has an invalid value; the message names the option."""

    def __init__(self, option, message):
        self.option = option
        super().__init__(f"{option}: {message}")


class InputError(MosaicError):
    """An input raster is missing, unreadable or incompatible; names the file."""

    def __init__(self, path, message):
        self.path = path
        super().__init__(f"{path}: {message}")


class OutputError(MosaicError):
    """The output cannot be written (path, permissions, full disk...)."""

    def __init__(self, path, message):
        self.path = path
        super().__init__(f"{path}: {message}")


class ResumeError(MosaicError):
    """RESUME was asked but the checkpoint does not belong to this job."""


class Cancelled(MosaicError):
    """The run was cancelled; a resumable partial output may have been kept."""

    def __init__(self, message="cancelled", partial=None):
        self.partial = partial
        super().__init__(message)
