"""Command line front end: ``python3 -m streaming_mosaic INPUT [INPUT ...] -o OUTPUT [options]``.

A thin layer over :func:`streaming_mosaic.core.engine.run`: argparse is
generated from :data:`~streaming_mosaic.core.options.PARAMS`, progress goes to a
terminal bar on stderr, and errors become exit statuses: 0 success, 2 bad input
(one line on stderr), 130 interrupted (Ctrl-C or SIGTERM; the partial output is
kept for ``--resume``), 1 an unexpected failure (a bug: please report it).
"""

import argparse
import contextlib
import os
import signal
import sys
import time

from osgeo import gdal

from .core import __version__
from .core.engine import run
from .core.errors import Cancelled, MosaicError, OptionError
from .core.gdalenv import one_malloc_arena
from .core.options import PARAMS, Options, choice, flag
from .core.plan import make_plan, summary_lines

PROG = "streaming_mosaic"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage block: scripts and users see exactly what is wrong.
        raise OptionError("command line", message)


def build_parser():
    """The argparse parser, one option per contract parameter."""
    command = os.path.basename(sys.argv[0] or "")
    parser = _Parser(prog=command if command == "streaming-mosaic" else f"python3 -m {PROG}",
                     description="Mosaic any number of rasters into one GeoTIFF, streaming "
                                 "window by window within a memory budget.")
    for p in PARAMS:
        if p.kind == "inputs":
            parser.add_argument("inputs", nargs="*", metavar=p.name, help=p.help)
            continue
        flags = [p.cli] + (["--output"] if p.kind == "output" else [])
        kwargs = {"dest": p.attr, "help": p.help}
        if p.kind == "output":
            kwargs.update(metavar="OUTPUT", default=None)
        elif p.kind == "bool":
            kwargs.update(action="store_true", default=False)
        elif p.kind == "enum":
            kwargs.update(metavar="|".join(p.names), default=p.initial,
                          help=f"{p.help} (default: {p.initial})")
        elif p.kind == "int":
            kwargs.update(type=int, default=p.default, metavar="N")
        elif p.kind == "float":
            kwargs.update(type=float, default=p.default, metavar="X")
        elif p.attr == "creation_options":
            kwargs.update(action="append", metavar="KEY=VALUE", default=None)
        else:
            kwargs.update(default=p.default)
        parser.add_argument(*flags, **kwargs)
    parser.add_argument("--extent-crs", dest="extent_crs", metavar="CRS",
                        help="CRS of --extent when it is not the target CRS (e.g. EPSG:4326)")
    every = Options.__dataclass_fields__["checkpoint_seconds"].default
    parser.add_argument("--checkpoint-seconds", dest="checkpoint_seconds", type=float,
                        default=every, metavar="S",
                        help="flush the output and update the resume checkpoint at most this "
                             f"often (default {every:g})")
    parser.add_argument("--plan", action="store_true",
                        help="print the plan (grid, windows, memory, warnings) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _attach_negative_values(parser, argv):
    """Join ``--extent -10,40,10,50`` into ``--extent=-10,40,10,50``.

    argparse takes a value starting with ``-`` for an option unless it is a
    plain negative number, so negative extents (or ``--nodata-input -1e9``)
    would be refused.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    out = []
    i = 0
    while i < len(argv):
        action = parser._option_string_actions.get(argv[i])
        if (action is not None and action.nargs is None
                and not isinstance(action, argparse._StoreConstAction) and i + 1 < len(argv)
                and argv[i + 1][:1] == "-" and argv[i + 1][1:2] in tuple("0123456789.")):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def options_from_args(args):
    """Turn parsed arguments into core :class:`Options`."""
    values = {}
    for p in PARAMS:
        value = getattr(args, p.attr)
        if p.kind == "enum" and value is not None:
            value = choice(p.attr, value)
        if p.attr == "creation_options" and value:
            value = "|".join(value)
        if p.kind == "inputs":
            value = list(value)
        values[p.attr] = value
    return Options(extent_crs=args.extent_crs, checkpoint_seconds=args.checkpoint_seconds,
                   **values)


class ProgressBar:
    """A one-line bar on a terminal; a line per 10% otherwise."""

    def __init__(self, stream, quiet):
        self.stream, self.quiet = stream, quiet
        self.tty = stream.isatty()
        self.last_step = -1
        self.last_draw = 0.0
        self.started = time.monotonic()

    def __call__(self, event):
        fraction, text = event.fraction, event.text
        if self.quiet:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.1 and fraction < 1:
                return
            self.last_draw = now
            filled = int(fraction * 30)
            eta = ""
            if 0 < fraction < 1:
                remaining = (now - self.started) * (1 - fraction) / fraction
                eta = f" ETA {remaining:4.0f}s"
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% "
                              f"{text:<22}{eta}")
            if fraction >= 1:
                self.stream.write("\n")
        else:
            step = int(fraction * 10)
            if step > self.last_step:
                self.last_step = step
                self.stream.write(f"{step * 10}% {text}\n")
        self.stream.flush()

    def log(self, message, level="info"):
        if level == "warning":
            self._line(f"warning: {message}")
        elif not self.quiet:
            self._line(message)

    def _line(self, text):
        if self.tty and 0 <= self.last_draw:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Entry point; returns the exit status."""
    # This process is ours: choose GDAL's exception mode (the core works in both),
    # which also silences GDAL >= 3.8's FutureWarning about not choosing.
    gdal.UseExceptions()
    # GDAL's own worker threads (GeoTIFF compression) have no per-thread handler,
    # and libtiff may print straight to the C stderr: keep all that off the
    # terminal (unless CPL_DEBUG asks for it); the run reports errors as one line.
    gdal.SetErrorHandler("CPLQuietErrorHandler")
    one_malloc_arena()  # before any worker thread: see its docstring
    with _c_stderr_silenced() as err:
        return _main(argv, err)


@contextlib.contextmanager
def _c_stderr_silenced():
    """Point file descriptor 2 at /dev/null; yield a stream on the real stderr.

    Python's own messages (and a traceback, should there be a bug) still go to
    the real stderr through sys.stderr.
    """
    if os.environ.get("CPL_DEBUG") or not hasattr(os, "dup2"):
        yield sys.stderr
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    real = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding=sys.stderr.encoding,
                     errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    saved_stream, sys.stderr = sys.stderr, real
    try:
        yield real
    finally:
        real.flush()
        sys.stderr = saved_stream
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        real.close()


def _main(argv, err):
    try:
        parser = build_parser()
        args = parser.parse_args(_attach_negative_values(parser, argv))
        options = options_from_args(args)
        bar = ProgressBar(err, args.quiet)
        if args.plan:
            plan = make_plan(options, strict=False)
            for line in summary_lines(plan) + [f"warning: {w}" for w in plan.warnings]:
                print(line)
            return 0
        if not options.output:
            raise OptionError(flag("output"), "no output file given")
        try:
            signal.signal(signal.SIGTERM, _sigterm)
        except ValueError:  # not the main thread
            pass
        result = run(options, progress=bar, log=bar.log)
        if not args.quiet:
            err.write(f"{result.output}: {result.summary()}\n")
        return 0
    except Cancelled as exc:
        err.write(f"\n{PROG}: {exc}\n")
        return 130
    except KeyboardInterrupt:
        err.write(f"\n{PROG}: interrupted\n")
        return 130
    except MosaicError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
