"""Compositing rules: small in-place functions folding one input at a time into a window.

In the style of rasterio's ``MERGE_METHODS``, each rule's ``update`` takes the
window's accumulators and one input's ``data`` with its ``valid`` mask
(True = valid; None = all valid) and updates the accumulators in place. Inputs
are folded one by one, so memory does not grow with the number of inputs.
``result`` then turns the accumulators into values, and :func:`finalize` casts
them to the output type and writes nodata where no input was valid.

All arrays are (bands, rows, cols); every rule works per pixel and per band.

:data:`RULES` is the public table of the built-in rules, by METHOD name. A caller
of the Python API may pass a :class:`Rule` of its own instead of a name; the
simplest way to make one is :func:`pairwise_rule`, from a function that merges
two values (``combine(current, new)``, element-wise). Rules travel with the plan
to worker processes, so their functions must be importable (module-level), as
for any pickled function.
"""

from dataclasses import dataclass

import numpy as np

from .feather import STRIP_SAMPLES, exact_fold
from .feather import fold as update_feather
from .feather import result as result_feather
from .stack import fill_stack, reduce_median, reduce_mode, reduce_percentile, reduce_stack


@dataclass
class Acc:
    """Accumulators of one window (or views into them)."""

    value: np.ndarray                  # work type; float64 sums for mean/feather
    filled: np.ndarray                 # bool: some input was valid here
    count: np.ndarray = None           # uint32: number of valid inputs (count, mean, feather)
    weight: np.ndarray = None          # float64: sum of feather weights
    single: np.ndarray = None          # work type: last valid value (feather, wide inputs)
    tmp: np.ndarray = None             # bool scratch of the same shape (saves allocations)
    approx: np.ndarray = None          # float64 sum beside a 64-bit integer one (overflow)

    def view(self, ox, oy, w, h):
        """Accumulators restricted to columns ox..ox+w and rows oy..oy+h."""
        def cut(a):
            return None if a is None else a[:, oy:oy + h, ox:ox + w]
        return Acc(cut(self.value), cut(self.filled), cut(self.count), cut(self.weight),
                   cut(self.single), cut(self.tmp), cut(self.approx))

    def scratch_bool(self):
        """A bool array shaped like the accumulators, free to overwrite."""
        return np.empty_like(self.filled) if self.tmp is None else self.tmp


def _valid_or_all(acc, valid):
    return np.ones_like(acc.filled) if valid is None else valid


def update_first(acc, data, valid, weight=None):
    """Keep the first valid value (earlier inputs on top); return how many samples it filled."""
    take = np.logical_not(acc.filled, out=acc.scratch_bool())
    if valid is not None:
        take &= valid
    np.copyto(acc.value, data, where=take, casting="unsafe")
    acc.filled |= take
    return np.count_nonzero(take)


class Pairwise:
    """An update that merges two values where both are valid: ``combine(current, new)``.

    Where only the new input is valid its value is taken; where only the
    accumulator is, it is kept. ``combine`` is a numpy ufunc (applied in place) or
    any element-wise function of two arrays returning an array of their shape.
    """

    def __init__(self, combine):
        self.combine = combine

    def __call__(self, acc, data, valid, weight=None):
        valid = _valid_or_all(acc, valid)
        both = np.logical_and(acc.filled, valid, out=acc.scratch_bool())
        if isinstance(self.combine, np.ufunc):
            self.combine(acc.value, data, out=acc.value, where=both, casting="unsafe")
        else:
            np.copyto(acc.value, self.combine(acc.value, data), where=both, casting="unsafe")
        fresh = np.logical_not(acc.filled, out=both)
        fresh &= valid
        np.copyto(acc.value, data, where=fresh, casting="unsafe")
        acc.filled |= valid


update_min = Pairwise(np.minimum)
update_max = Pairwise(np.maximum)


def update_sum(acc, data, valid, weight=None):
    """Add valid values in a wide type (int64, uint64 or float64)."""
    valid = _valid_or_all(acc, valid)
    np.add(acc.value, data, out=acc.value, where=valid, casting="unsafe")
    if acc.approx is not None:
        np.add(acc.approx, data, out=acc.approx, where=valid, casting="unsafe")
    acc.filled |= valid


def update_count(acc, data, valid, weight=None):
    """Count valid inputs."""
    valid = _valid_or_all(acc, valid)
    np.add(acc.count, valid, out=acc.count, casting="unsafe")
    acc.filled |= valid


def update_mean(acc, data, valid, weight=None):
    """Sum (float64) and count valid values; the mean is taken at the end."""
    valid = _valid_or_all(acc, valid)
    if data.dtype.kind in "iub":
        # Zeroing invalid integers and adding everything is exact and 3x faster than where=.
        np.add(acc.value, np.multiply(data, valid, dtype=data.dtype), out=acc.value,
               casting="unsafe")
    else:
        np.add(acc.value, data, out=acc.value, where=valid, casting="unsafe")
    np.add(acc.count, valid, out=acc.count, casting="unsafe")
    acc.filled |= valid


def result_value(acc):
    return acc.value


def result_sum(acc):
    """The sum; a 64-bit integer sum past its type's range saturates.

    The integer sum wraps, so it is exact modulo 2**64; the float64 sum beside it
    tells which multiple of 2**64 the true sum is away (0: it is exact)."""
    if acc.approx is None:
        return acc.value
    info = np.iinfo(acc.value.dtype)
    wraps = np.rint((acc.approx - acc.value.astype(np.float64)) / 2.0 ** 64)
    out = acc.value.copy()
    out[wraps > 0] = info.max
    out[wraps < 0] = info.min
    return out


def result_count(acc):
    return acc.count


def result_mean(acc):
    """The mean, computed in place in the sum accumulator (which it replaces)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(acc.value, np.maximum(acc.count, 1, out=acc.count), out=acc.value)


@dataclass(frozen=True)
class Rule:
    """A compositing rule: how to fold inputs and read the result."""

    name: str
    update: object
    result: object
    work: str = "input"        # accumulator type: input, wide (int64, uint64 or float64), float64
    counts: bool = False       # needs the count accumulator
    weights: bool = False      # needs the feather accumulators and per-input weights
    reverse: bool = False      # feed inputs last to first
    stop_when_full: bool = False  # update returns the number of samples it filled
    stack: bool = False        # needs every input at once: ``reduce(stack, count, q)``
    reduce: object = None      # (see core/stack.py) instead of ``update``

    def work_dtype(self, input_dtype):
        input_dtype = np.dtype(input_dtype)
        if self.work == "float64":
            return np.dtype(np.float64)
        if self.work == "wide":
            return np.dtype(np.float64 if input_dtype.kind == "f" else
                            np.uint64 if input_dtype == np.uint64 else np.int64)
        return input_dtype

    def exact_sum(self, input_dtype):
        """True when the work type is a 64-bit integer whose sum may leave its range."""
        return self.update is update_sum and np.dtype(input_dtype).kind in "iu" \
            and np.dtype(input_dtype).itemsize == 8

    def bytes_per_sample(self, input_dtype):
        """Accumulator bytes per pixel and band (for the memory budget)."""
        size = self.work_dtype(input_dtype).itemsize + 1
        if self.counts:
            size += 4
        if self.weights:
            size += 8  # the weight sum
            if not exact_fold(input_dtype):
                size += np.dtype(input_dtype).itemsize + 4  # the single value, the count
        if self.exact_sum(input_dtype):
            size += 8  # the float64 sum beside it
        if self.update is update_mean:
            size += np.dtype(input_dtype).itemsize  # the input with invalid samples zeroed
        return size


# "last" folds the inputs in reverse keeping the first valid value, which is the
# same result and lets a window stop reading once every pixel is filled.
RULES = {rule.name: rule for rule in (  # in the contract's METHOD order
    Rule("last", update_first, result_value, reverse=True, stop_when_full=True),
    Rule("first", update_first, result_value, stop_when_full=True),
    Rule("min", update_min, result_value),
    Rule("max", update_max, result_value),
    Rule("mean", update_mean, result_mean, work="float64", counts=True),
    Rule("sum", update_sum, result_sum, work="wide"),
    Rule("count", update_count, result_count, counts=True),
    Rule("feather", update_feather, result_feather, work="float64", weights=True),
    Rule("median", None, result_value, work="float64", stack=True, reduce=reduce_median),
    Rule("percentile", None, result_value, work="float64", stack=True,
         reduce=reduce_percentile),
    Rule("mode", None, result_value, work="float64", stack=True, reduce=reduce_mode),
)}


def pairwise_rule(name, combine, work="input"):
    """A :class:`Rule` from a function merging two valid values, for the Python API.

    Parameters
    ----------
    name : str
        Shown in logs and stored in the checkpoint (a resume must use the same rule).
    combine : callable(current, new) -> array
        Element-wise merge of the value so far and the next input's value (inputs in
        stacking order); a numpy ufunc such as ``np.fmax`` works as is. Must be a
        module-level function (rules travel to worker processes).
    work : {"input", "wide", "float64"}
        Type the values are merged in: the inputs' type, a wide one (int64/float64)
        or float64. The result is cast to the output type (round half to even, clip).

    Examples
    --------
    Keep the value of largest magnitude (a change map of signed differences)::

        def larger_magnitude(current, new):
            return np.where(np.abs(new) > np.abs(current), new, current)

        streaming_mosaic.mosaic(paths, "out.tif",
                                method=pairwise_rule("absmax", larger_magnitude))
    """
    return Rule(str(name), Pairwise(combine), result_value, work=work)


def new_acc(rule, shape, input_dtype, arrays=None):
    """Zeroed accumulators for a window of ``shape`` (bands, rows, cols).

    ``arrays(name, shape, dtype)`` may supply reusable buffers (a thread's
    scratch space); by default fresh arrays are allocated.
    """
    def zeros(name, dtype):
        if arrays is None:
            return np.zeros(shape, dtype)
        buf = arrays(name, shape, dtype)
        buf.fill(0)
        return buf

    acc = Acc(zeros("acc.value", rule.work_dtype(input_dtype)), zeros("acc.filled", bool))
    acc.tmp = arrays("acc.tmp", shape, bool) if arrays is not None else None
    if rule.counts:
        acc.count = zeros("acc.count", np.uint32)
    if rule.weights:
        acc.weight = zeros("acc.weight", np.float64)
        if not exact_fold(input_dtype):
            acc.count = zeros("acc.count", np.uint32)
            acc.single = zeros("acc.single", input_dtype)
    if rule.exact_sum(input_dtype):
        acc.approx = zeros("acc.approx", np.float64)
    return acc


def cast(values, dtype):
    """Convert to ``dtype``: round half to even for integers, clip to the type's range."""
    dtype = np.dtype(dtype)
    values = np.asarray(values)
    if values.dtype == dtype:
        return values
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.dtype.kind == "f":
            # As nan_to_num(nan=0) then clip, in place (nan_to_num alone cost 4 passes), in
            # float64: float32(2**31 - 1) is 2**31, which would wrap.
            values = np.rint(values, dtype=np.float64)
            if info.min == 0:
                np.fmax(values, 0, out=values)  # NaN -> 0 as well
                np.minimum(values, info.max, out=values)
            else:
                with np.errstate(invalid="ignore"):
                    np.clip(values, info.min, info.max, out=values)
                values[np.isnan(values)] = 0
            out = values.astype(dtype)
            if dtype.itemsize == 8:
                # float64(2**63 - 1) is 2**63: clipped to it, the cast wraps to -2**63.
                out[values >= float(info.max)] = info.max
            return out
        if np.can_cast(values.dtype, dtype):
            return values.astype(dtype)
        return np.clip(values, info.min, info.max).astype(dtype)
    if dtype.kind == "f" and values.dtype.kind == "f" and values.dtype.itemsize > dtype.itemsize:
        info = np.finfo(dtype)
        return np.clip(values, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _cast_into(values, out):
    """``out[...] = cast(values, out.dtype)``, a strip of rows at a time (in the CPU cache,
    without whole-window temporaries)."""
    if values.dtype == out.dtype or values.ndim != 3:
        np.copyto(out, cast(values, out.dtype))
        return
    step = max(1, STRIP_SAMPLES // max(values.shape[0] * values.shape[2], 1))
    for r0 in range(0, values.shape[1], step):
        np.copyto(out[:, r0:r0 + step], cast(values[:, r0:r0 + step], out.dtype))


def nudged(nodata, dtype):
    """The value a valid pixel equal to ``nodata`` is written as (the nearest other value)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(np.nextafter(dtype.type(nodata), dtype.type(np.inf)))
    info = np.iinfo(dtype)
    return dtype.type(nodata + 1 if nodata < info.max else nodata - 1)


def finalize(rule, acc, out_dtype, nodata, out=None):
    """Turn accumulators into output values.

    Pixels where no input is valid get ``nodata`` (0 when None). A valid result
    equal to ``nodata`` is moved to the nearest other value (:func:`nudged`) so
    it does not become a hole.

    Parameters
    ----------
    out : numpy.ndarray, optional
        Buffer of the window's shape and ``out_dtype`` to write into; without
        it the result may be one of the accumulators, changed in place.

    Returns
    -------
    (array, int)
        The output window and how many valid pixels were moved off nodata.
    """
    if out is not None:
        _cast_into(rule.result(acc), out)
    else:
        out = cast(rule.result(acc), out_dtype)
    moved = 0
    empty = np.logical_not(acc.filled, out=acc.scratch_bool())
    if nodata is None:
        out[empty] = 0
        return out, moved
    fill = np.dtype(out_dtype).type(nodata)
    hit = np.isnan(out) if np.isnan(fill) else out == fill
    hit &= acc.filled
    moved = int(np.count_nonzero(hit))
    if moved:
        out[hit] = nudged(nodata, out_dtype)
    np.copyto(out, fill, where=empty)  # faster than boolean indexing
    return out, moved


def composite(method, stack, valids, out_dtype=None, nodata=None, weights=None, q=50.0):
    """Composite a whole stack at once (for tests and small arrays).

    Parameters
    ----------
    method : str
        A key of :data:`RULES`.
    stack : sequence of arrays (bands, rows, cols)
    valids : sequence of bool arrays or None
    weights : sequence of (rows, cols) float arrays, for feather (used as float32; > 0
        wherever the input is valid)
    q : float
        The percentile, for METHOD=percentile.

    Returns
    -------
    numpy.ndarray
    """
    rule = RULES[method] if isinstance(method, str) else method
    dtype = np.result_type(*[np.asarray(a).dtype for a in stack])
    out_dtype = dtype if out_dtype is None else out_dtype
    if rule.name == "count":
        out_dtype = out_dtype if np.dtype(out_dtype).kind in "iu" else np.uint32
    acc = new_acc(rule, np.shape(stack[0]), dtype)
    if rule.stack:
        layers = np.full((len(stack),) + np.shape(stack[0]), np.nan)
        count = np.zeros(np.shape(stack[0]), np.uint32)
        for j, data in enumerate(stack):
            fill_stack(layers, count, j, 0, 0, np.asarray(data), valids[j])
        acc.value[...] = reduce_stack(rule, layers, count, q)
        acc.filled[...] = count > 0
        return finalize(rule, acc, out_dtype, nodata)[0]
    order = range(len(stack) - 1, -1, -1) if rule.reverse else range(len(stack))
    for i in order:
        weight = None if weights is None else weights[i]
        rule.update(acc, np.asarray(stack[i]), valids[i], weight)
    return finalize(rule, acc, out_dtype, nodata)[0]
