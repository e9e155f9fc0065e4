"""Fast, in-process checks of the edge parsing: every value is checked once, into names."""

import math

import pytest

from streaming_mosaic.cli import _attach_negative_values, build_parser, options_from_args
from streaming_mosaic.core.errors import OptionError
from streaming_mosaic.core.options import (
    PARAMS,
    Options,
    choice,
    enum_name,
    parse_bands,
    parse_creation_options,
    parse_extent,
    validate,
)
from streaming_mosaic.core.plan import block_size


@pytest.mark.parametrize("text,expected", [
    (None, None), ("", None), ("  ", None), ("3", (3,)), ("3,2,1", (3, 2, 1)), (" 4 , 1 ", (4, 1)),
])
def test_bands_parse_to_band_numbers(text, expected):
    assert parse_bands(text) == expected


@pytest.mark.parametrize("text", ["0", "a,b", "1,,2", "-1", "1.5"])
def test_bad_bands_name_the_option(text):
    with pytest.raises(OptionError, match="BANDS"):
        parse_bands(text)


def test_creation_options_keep_order_and_upper_case_keys():
    co = parse_creation_options("compress=zstd| zstd_level = 9 |\nBLOCKXSIZE=256")
    assert list(co.items()) == [("COMPRESS", "zstd"), ("ZSTD_LEVEL", "9"), ("BLOCKXSIZE", "256")]
    with pytest.raises(OptionError, match="CREATION_OPTIONS"):
        parse_creation_options("TILED")


def test_extent_in_gdal_order_and_refusals():
    assert parse_extent("1,2,3,4") == ((1.0, 2.0, 3.0, 4.0), None)
    assert parse_extent((1, 2, 3, 4))[0] == (1.0, 2.0, 3.0, 4.0)
    assert parse_extent(None) == (None, None)
    for bad in ("1,2,3", "1,2,a,4", "3,2,1,4", "1,2,3,nan"):
        with pytest.raises(OptionError, match="EXTENT"):
            parse_extent(bad)


def test_enum_names_aliases_and_indices():
    assert choice("resampling", "near") == "nearest"
    assert choice("resampling", "MED") == "median"
    assert choice("data_type", "byte") == "uint8"
    assert choice("method", "7") == "feather" == choice("method", 7)
    assert enum_name("compression", 2) == "zstd"
    for attr, bad in (("method", "avg"), ("compression", 99), ("resolution", True)):
        with pytest.raises(OptionError):
            choice(attr, bad)


def test_options_hold_names_and_validate_checks_them():
    opts = Options(inputs=["a.tif"])
    for p in PARAMS:
        if p.kind == "enum":
            assert getattr(opts, p.attr) == p.names[p.default]
    validate(opts)
    for field, value, option in (("method", 0, "METHOD"), ("memory_mb", 1, "MEMORY_MB"),
                                 ("feather_distance", math.inf, "FEATHER_DISTANCE"),
                                 ("threads", 1.5, "THREADS"), ("chunk_size", "8", "CHUNK_SIZE")):
        with pytest.raises(OptionError, match=option):
            validate(Options(inputs=["a.tif"], **{field: value}))


def test_cli_flags_become_the_same_options():
    parser = build_parser()
    argv = ["a.tif", "b.tif", "-o", "o.tif", "--method", "mean", "--resampling", "near",
            "--dtype", "byte", "--co", "ZSTD_LEVEL=3", "--co", "TILED=YES", "--nodata-input",
            "-9999", "--extent", "-10,-5,10,5"]
    opts = options_from_args(parser.parse_args(_attach_negative_values(parser, argv)))
    assert (opts.method, opts.resampling, opts.data_type) == ("mean", "nearest", "uint8")
    assert opts.creation_options == "ZSTD_LEVEL=3|TILED=YES"
    assert opts.nodata_input == -9999.0 and opts.inputs == ["a.tif", "b.tif"]
    assert parse_extent(opts.extent)[0] == (-10.0, -5.0, 10.0, 5.0)


@pytest.mark.parametrize("co,chunk,size,expected", [
    ({}, 0, (4000, 4000), 512), ({}, 256, (4000, 4000), 256), ({}, 0, (300, 200), 256),
    ({"BLOCKXSIZE": "128", "BLOCKYSIZE": "192"}, 0, (4000, 4000), 384),
])
def test_block_size(co, chunk, size, expected):
    assert block_size(co, chunk, size) == expected


def test_block_size_refuses_a_block_not_a_multiple_of_16():
    with pytest.raises(OptionError, match="BLOCKXSIZE"):
        block_size({"BLOCKXSIZE": "100"}, 0, (1000, 1000))


def _budget(memory_mb, **kw):
    from streaming_mosaic.core.composite import RULES
    from streaming_mosaic.core.memory import plan_budget
    args = dict(threads=2, block=256, bands=3, rule=RULES["last"], input_dtype="uint16",
                out_dtype="uint16", grid_size=(20000, 20000))
    args.update(kw)
    return plan_budget(memory_mb, **args)


def test_the_budget_fits_its_estimate_and_grows_windows_with_memory():
    small, large = _budget(64), _budget(1024)
    for budget in (small, large):
        assert budget.fits and budget.estimated_peak <= budget.total
        assert budget.chunk % 256 == 0 and budget.in_flight == budget.threads + 1
    assert small.chunk < large.chunk <= 2048


def test_the_budget_drops_threads_before_refusing_and_says_when_nothing_fits():
    tight = _budget(24, threads=8)
    assert tight.threads < 8
    assert not _budget(16, threads=1, bands=64, input_dtype="float64",
                       out_dtype="float64").fits


def test_deep_stacks_and_halos_cost_memory():
    from streaming_mosaic.core.composite import RULES
    flat = _budget(256, rule=RULES["median"], depth=lambda side: 2)
    deep = _budget(256, rule=RULES["median"], depth=lambda side: 200)
    assert (deep.depth, flat.depth) == (200, 2) and deep.chunk < flat.chunk
    assert _budget(256, rule=RULES["feather"], halo=64).per_window > \
        _budget(256, rule=RULES["feather"]).per_window


def test_feather_renders_on_half_the_threads_and_compresses_on_all():
    """A halo's input blocks are decoded again by each thread reading them: feather
    renders on half the threads, GDAL compresses on all, and windows stay <= 512 px."""
    from streaming_mosaic.core.composite import RULES
    from streaming_mosaic.core.memory import FEATHER_MAX_CHUNK
    feather = [_budget(1024, rule=RULES["feather"], halo=32, threads=n) for n in (1, 2, 4, 5)]
    assert [(b.threads, b.compress) for b in feather] == [(1, 1), (1, 2), (2, 4), (2, 5)]
    assert all(b.chunk == FEATHER_MAX_CHUNK and b.fits for b in feather)
    last = _budget(1024, threads=4)
    assert (last.threads, last.compress) == (4, 4) and last.chunk > FEATHER_MAX_CHUNK
    # Uncompressed: nothing for GDAL's threads to do, all of them render.
    raw = _budget(1024, rule=RULES["feather"], halo=32, threads=4, compressed=False)
    assert (raw.threads, raw.compress) == (4, 4)


def test_smallest_budget_is_the_threshold():
    from streaming_mosaic.core.memory import smallest_budget_mb
    assert smallest_budget_mb(lambda mb: mb >= 1000, 16) == 1000
    assert smallest_budget_mb(lambda mb: True, 300) == 300
