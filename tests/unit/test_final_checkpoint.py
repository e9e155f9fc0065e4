"""The journal at the end of a run: a plain output is renamed right after closing, so
no "every window done" checkpoint (a flush and three fsyncs) is written for it; an
output with overviews or a COG step still gets one, and both resume to the exact
mosaic after a crash before the rename."""

import numpy as np
import pytest

from helpers import journal, read, tile_set, vrt_reference
from streaming_mosaic.core import checkpoint, engine, writer
from streaming_mosaic.core.errors import Cancelled
from streaming_mosaic.core.options import Options


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    paths = tile_set(folder, seed=41, grid=(2, 2), size=(600, 500), overlap=40, bands=2,
                     dtype="uint16", nodata=0)
    return paths, vrt_reference(paths, folder / "ref.tif")


def _options(paths, out, **kw):
    # The default CHECKPOINT_SECONDS: a run this short checkpoints only when it starts.
    return Options(inputs=[str(p) for p in paths], output=str(out), chunk_size=256,
                   threads=2, **kw)


def _journaled(monkeypatch):
    """The ``done`` of every checkpoint written from now on."""
    written = []
    real = checkpoint.write

    def write(output, identity, done, total, failed=()):
        written.append((done, total))
        return real(output, identity, done, total, failed)

    monkeypatch.setattr(checkpoint, "write", write)
    return written


def _crash_before_rename(monkeypatch):
    def publish(src, output):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "publish", publish)


@pytest.mark.parametrize("extra,final", [({}, False), ({"overviews": True}, True)])
def test_only_a_long_finish_gets_a_final_checkpoint_and_both_resume(
        tiles, tmp_path, monkeypatch, extra, final):
    paths, ref = tiles
    out = tmp_path / "mosaic.tif"
    written = _journaled(monkeypatch)
    _crash_before_rename(monkeypatch)
    with pytest.raises(Cancelled):
        engine.run(_options(paths, out, **extra))
    total = written[0][1]
    assert total > 4 and written[0] == (0, total)
    assert any(done == total for done, _ in written) is final
    assert journal(out)["done"] == (total if final else 0)
    assert not out.exists()

    monkeypatch.undo()
    result = engine.run(_options(paths, out, resume=True, **extra))
    assert result.resumed_from == (total if final else 0)
    got, want = read(out), read(ref)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1:] == want[1:]
