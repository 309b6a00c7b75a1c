"""The reader as an array: indexing, dtype, pickling, dask."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import tcscodec
from tcscodec.errors import TcsValueError

pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: a fast decoder: the properties tested here do not depend on quality
FAST = dict(decoder="gap-tv", iterations=4)


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.poisson(rng.uniform(5, 200, (1, 40, 50)), (12, 40, 50)).astype(np.uint16)
    path = tmp_path_factory.mktemp("array") / "m.tcs"
    tcscodec.write(path, frames, B=5, seed=3, tile=(16, 32))  # 3 groups, the last short; 3 x 2 records
    with tcscodec.open(path, **FAST, dtype=np.float32) as r:
        decoded = r.read()
    return path, frames, decoded


def test_reader_is_array_like(movie_file):
    path, frames, decoded = movie_file
    with tcscodec.open(path, **FAST) as r:
        assert len(r) == 12 and r.shape == (12, 40, 50) and r.ndim == 3
        assert r.dtype == np.uint16 and r.input_dtype == np.uint16
        whole = r.read()
        assert whole.dtype == np.uint16
        assert np.array_equal(whole, np.clip(np.rint(decoded), 0, 65535).astype(np.uint16))
        assert r.properties().dtype == np.uint16 and r.properties(0).shape == (40, 50)
        assert np.array_equal(np.asarray(r), whole)
        assert np.asarray(r, dtype=np.float64).dtype == np.float64
        assert np.array_equal(np.stack(list(r)), whole)
        cases = [np.s_[3], np.s_[-1], np.s_[2:9], np.s_[2:9:3, 5:30:2, -7:], np.s_[..., 4, 5], np.s_[:, 39],
                 np.s_[11:2:-4, ::-3], np.s_[4, 10:20, 7], np.s_[5:5], np.s_[:, 10:10]]
        for key in cases:
            got = r[key]
            assert got.dtype == np.uint16 and np.array_equal(got, whole[key]), key


def test_indexing_errors_name_the_problem(movie_file):
    path, _, _ = movie_file
    with tcscodec.open(path, **FAST) as r:
        with pytest.raises(IndexError, match="axis 0 of size 12"):
            r[12]
        with pytest.raises(IndexError, match="axis 2 of size 50"):
            r[0, 0, -51]
        with pytest.raises(IndexError, match="too many indices"):
            r[0, 0, 0, 0]
        with pytest.raises(IndexError, match="single ellipsis"):
            r[..., ...]
        with pytest.raises(TypeError, match="integers and slices"):
            r[[1, 2]]
    with pytest.raises(TcsValueError, match="dtype"):
        tcscodec.open(path, dtype="complex64")
    with pytest.raises(TcsValueError, match="dtype must be 'input'"):
        tcscodec.open(path, dtype="nonsense")


def test_float_output_on_request(movie_file):
    path, _, decoded = movie_file
    with tcscodec.open(path, **FAST, dtype="float32") as r:
        assert r.dtype == np.float32 and np.array_equal(r[4], decoded[4])


def test_reader_pickles_as_its_path_and_reopens(movie_file):
    path, _, decoded = movie_file
    with tcscodec.open(path, **FAST, dtype=np.float32) as r:
        r.motion()
        clone = pickle.loads(pickle.dumps(r))
    assert clone.path == path and clone.decode_options == {"iterations": 4} and clone.dtype == np.float32
    assert clone._motion is not None  # the estimated motion travels, not recomputed
    assert np.array_equal(clone[6], decoded[6])
    clone.close()


def test_to_dask_with_threads_equals_read(movie_file):
    da = pytest.importorskip("dask.array")
    path, _, decoded = movie_file
    with tcscodec.open(path, **FAST, dtype=np.float32) as r:
        x = r.to_dask()
        assert x.chunks == ((5, 5, 2), (16, 16, 8), (32, 18)) and x.dtype == np.float32
        assert np.array_equal(x.compute(scheduler="threads", num_workers=4), decoded)
        y = r.to_dask(chunks=(3, 40, 25))
        assert np.array_equal(y[2:7, 5:].compute(scheduler="threads"), decoded[2:7, 5:])
        assert isinstance(da.mean(y), da.Array)


@pytest.mark.slow
def test_to_dask_on_a_local_cluster_equals_read(movie_file):
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    path, _, decoded = movie_file
    with tcscodec.open(path, **FAST, dtype=np.float32) as r:
        x = r.to_dask(chunks=(5, 20, 50))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert np.array_equal(client.compute(x).result(), decoded)


def test_cli_decode_in_parallel_equals_one_thread(movie_file, tmp_path):
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    path, _, _ = movie_file
    outs = {}
    for name, extra in [("one", ["--threads", "1"]), ("two", ["--threads", "2"]),
                        ("part", ["--threads", "2", "--frames", "3:11:2", "--region", "5:30,7:44"])]:
        out = tmp_path / f"{name}.npy"
        res = CliRunner().invoke(main, ["decode", str(path), "-o", str(out), "--decoder", "gap-tv", "-q", *extra])
        assert res.exit_code == 0, res.output
        outs[name] = np.load(out)
    assert outs["one"].dtype == np.uint16 and np.array_equal(outs["one"], outs["two"])
    assert np.array_equal(outs["part"], outs["one"][3:11:2, 5:30, 7:44])


@pytest.mark.slow
def test_cli_decode_on_local_workers_equals_one_thread(movie_file, tmp_path):
    pytest.importorskip("distributed")
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    path, _, _ = movie_file
    outs = []
    for extra in (["--threads", "1"], ["--workers", "2"]):
        out = tmp_path / f"{len(outs)}.npy"
        res = CliRunner().invoke(main, ["decode", str(path), "-o", str(out), "--decoder", "gap-tv", "-q", *extra])
        assert res.exit_code == 0, res.output
        outs.append(np.load(out))
    assert np.array_equal(outs[0], outs[1])


def test_iter_groups_with_an_executor_equals_read(movie_file):
    from concurrent.futures import ThreadPoolExecutor

    path, _, decoded = movie_file
    with tcscodec.open(path, **FAST, dtype=np.float32) as r, ThreadPoolExecutor(3) as ex:
        got = list(r.iter_groups([2, 0, 1], region=(3, 33, 0, 50), executor=ex, ahead=2))
    assert [g for g, _ in got] == [2, 0, 1]
    for g, frames in got:
        assert np.array_equal(frames, decoded[5 * g:5 * g + len(frames), 3:33])
