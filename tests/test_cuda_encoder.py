"""tcscodec.cuda_encoder: the CUDA encoder against the CPU encoder.

Three parts:

* CPU only: the encoder's host-side pipeline (lagged measurements, group
  slots, the short last group, drain/flush/close, validation, device-array
  detection, the writer's ``device="cuda"`` path) with the GPU stage
  replaced by a numpy fake, and the errors without CuPy;
* CPU only, needs g++: the real CuPy backend (buffers, pointer arithmetic,
  kernel arguments, flag round trip), ``encode_group_device`` and
  bench/encode_gpu.py on tests/fake_cupy.py, a fake CuPy whose kernels run
  through the g++ shim of kernels/mask_sum.cu (no stream ordering checks);
* ``@pytest.mark.gpu`` (skipped without CuPy and a CUDA device, see
  conftest.py): CudaEncoder bit for bit against CpuEncoder for every dtype,
  odd shapes, B, lag and mask mode, with numpy, CuPy and torch CUDA input.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import tcscodec
from tcscodec import cuda_encoder
from tcscodec.cuda_encoder import CudaEncoder, _is_device_array
from tcscodec.encoder import CpuEncoder, encode_group
from tcscodec.encoder_factory import make_encoder
from tcscodec.errors import TcsDeviceError, TcsValueError

from . import fake_cupy as fake_cupy_module
from .conftest import requires_cuda
from .cuda_shim import GXX, build_shim

SEED = 0x5EED_0F_7E57
DTYPES = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.float32)]


def make_movie(rng, n_frames, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, (n_frames, *shape), dtype=dtype, endpoint=True)
    mag = 10.0 ** rng.uniform(-20, 20, (n_frames, *shape))
    return (rng.standard_normal((n_frames, *shape)) * mag).astype(np.float32)


def cpu_measurements(frames, B):
    enc = CpuEncoder(SEED, B, frames.shape[1:], frames.dtype)
    out = [m for m in map(enc.push, frames) if m is not None]
    return out + enc.drain()


def assert_same_measurements(got, want, what=""):
    assert [(m.group, m.n_frames) for m in got] == [(m.group, m.n_frames) for m in want], what
    for g, w in zip(got, want, strict=True):
        assert g.data.dtype == w.data.dtype and g.data.shape == w.data.shape, what
        # bitwise: float64 sums must match to the last bit
        assert np.array_equal(
            g.data.view(f"u{g.data.itemsize}"), w.data.view(f"u{w.data.itemsize}")
        ), f"{what} group {g.group}"


# --- CPU only: no CuPy ------------------------------------------------------------


def test_without_cupy_raises_device_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(TcsDeviceError, match=r"needs CuPy and a CUDA GPU: pip install 'tcscodec\[cuda\]'"):
        CudaEncoder(SEED, 10, (8, 8), np.uint16)
    with pytest.raises(TcsDeviceError):
        make_encoder("cuda", SEED, 10, (8, 8), np.uint16)
    with pytest.raises(TcsDeviceError):
        cuda_encoder.load_module()
    assert not cuda_encoder.cuda_available()


def test_arguments_are_checked_before_the_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    for kwargs, match in [
        (dict(B=1), "B must be in 2..64"),
        (dict(B=65), "B must be in 2..64"),
        (dict(B="auto"), "B='auto' .groups of variable length. is a writer option on the CPU"),
        (dict(dtype=np.int16), "int16 are not supported"),
        (dict(dtype=np.float64), "float64 are not supported"),
        (dict(shape=(0, 5)), "outside"),
        (dict(shape=(2**24 + 1, 5)), "outside"),
        (dict(shape=(5,)), r"shape must be \(height, width\)"),
        (dict(lag=2), "lag must be 0 or 1"),
        (dict(masks="host"), "masks must be one of"),
        (dict(staging=0), "staging must be a positive int"),
    ]:
        args = dict(seed=SEED, B=10, shape=(8, 8), dtype=np.uint16) | kwargs
        with pytest.raises(TcsValueError, match=match):
            CudaEncoder(**args)
    with pytest.raises((TypeError, ValueError)):
        CudaEncoder(-1, 10, (8, 8), np.uint16)


def test_is_device_array():
    class CudaArrayInterface:
        __cuda_array_interface__ = {"shape": (2, 2), "typestr": "<u2", "data": (0, False), "version": 3}

    class DLPack:
        def __init__(self, device_type):
            self.device_type = device_type

        def __dlpack_device__(self):
            return (self.device_type, 0)

    assert not _is_device_array(np.zeros((2, 2)))
    assert not _is_device_array([[1, 2], [3, 4]])
    assert _is_device_array(CudaArrayInterface())
    assert _is_device_array(DLPack(2))  # kDLCUDA
    assert _is_device_array(DLPack(13))  # kDLCUDAManaged
    assert not _is_device_array(DLPack(1))  # kDLCPU
    torch = pytest.importorskip("torch")
    assert not _is_device_array(torch.zeros(2, 2, requires_grad=True))


# --- CPU only: the host pipeline with the GPU stage faked ---------------------------


class FakeDeviceArray:
    """Stands for a CuPy array or torch CUDA tensor in the fake backend."""

    def __init__(self, array):
        self.array = np.asarray(array)
        self.__cuda_array_interface__ = {
            "shape": self.array.shape, "typestr": self.array.dtype.str,
            "data": (0, False), "version": 3,
        }


class FakeBackend:
    """The GPU stage in numpy, with _CupyBackend's interface.  It checks the
    encoder's side of the slot protocol: a slot is staged only in group
    order, launched once per group, and its measurement collected before the
    slot is launched again (the pinned download buffer is reused)."""

    instances: list = []

    def __init__(self, seed, B, shape, dtype, device_id, masks, staging):
        self.seed, self.B = seed, B
        self.frames = np.zeros((2, B, *shape), dtype)
        self.launched = [None, None]  # (measurement, bad) awaiting collection
        self.log = []
        self.closed = False
        FakeBackend.instances.append(self)

    def to_device(self, frame):
        return frame.array

    def stage_host(self, frame, slot, b):
        assert isinstance(frame, np.ndarray)
        self.frames[slot, b] = frame
        self.log.append(("host", slot, b))

    #: pretend every device frame is finite: exercises the kernel-flag backstop
    trust_device_frames = False

    def all_finite(self, arr, frame):
        return self.trust_device_frames or bool(np.isfinite(arr).all())

    def stage_device(self, arr, frame, slot, b):
        assert isinstance(frame, FakeDeviceArray)
        self.frames[slot, b] = arr
        self.log.append(("device", slot, b))

    def launch(self, slot, n):
        assert self.launched[slot] is None, "slot launched again before it was collected"
        frames = self.frames[slot, :n]
        finite = np.isfinite(frames).reshape(n, -1).all(axis=1)
        bad = int(np.argmin(finite)) if not finite.all() else -1
        with np.errstate(invalid="ignore", over="ignore"):
            y = encode_group(frames, self.seed, self.B)
        self.launched[slot] = (y, bad)
        self.log.append(("launch", slot, n))

    def collect(self, slot):
        assert self.launched[slot] is not None, "collected a slot that was not launched"
        result, self.launched[slot] = self.launched[slot], None
        self.log.append(("collect", slot))
        return result

    def close(self):
        self.closed = True


@pytest.fixture
def fake_gpu(monkeypatch):
    FakeBackend.instances.clear()
    monkeypatch.setattr(FakeBackend, "trust_device_frames", False)
    monkeypatch.setattr(cuda_encoder, "_CupyBackend", FakeBackend)
    return FakeBackend


@pytest.mark.parametrize("n_frames", [1, 9, 10, 11, 20, 29, 30, 31, 47])
def test_lag1_returns_each_group_one_group_late(fake_gpu, n_frames):
    B = 10
    frames = make_movie(np.random.default_rng(n_frames), n_frames, (5, 7), np.uint16)
    want = cpu_measurements(frames, B)
    enc = CudaEncoder(SEED, B, (5, 7), np.uint16)
    got = []
    for i, frame in enumerate(frames):
        m = enc.push(frame)
        if (i + 1) % B == 0 and i + 1 > B:
            # the push completing group g returns group g - 1
            assert m is not None and m.group == (i + 1) // B - 2
            got.append(m)
        else:
            assert m is None
        assert enc.frames_pushed == i + 1 and enc.group == (i + 1) // B
    rest = enc.drain()
    assert isinstance(rest, list)
    assert len(rest) == (n_frames >= B) + (n_frames % B > 0)
    assert_same_measurements(got + rest, want)
    assert enc.drain() == []


@pytest.mark.parametrize("n_frames", [1, 10, 13, 30])
def test_lag0_is_cpu_encoder_compatible(fake_gpu, n_frames):
    B = 10
    frames = make_movie(np.random.default_rng(n_frames), n_frames, (6, 65), np.float32)
    cpu = CpuEncoder(SEED, B, (6, 65), np.float32)
    gpu = CudaEncoder(SEED, B, (6, 65), np.float32, lag=0)
    for frame in frames:
        a, b = cpu.push(frame), gpu.push(frame)
        assert (a is None) == (b is None)
        if a is not None:
            assert_same_measurements([b], [a])
    a, b = cpu.drain(), gpu.drain()
    assert len(a) == len(b) == (n_frames % B > 0)
    assert_same_measurements(b, a)
    assert gpu.drain() == [] and cpu.drain() == []


def test_drain_is_the_same_for_both_lags(fake_gpu):
    frames = make_movie(np.random.default_rng(0), 23, (4, 9), np.uint8)
    results = {}
    for lag in (0, 1):
        enc = CudaEncoder(SEED, 5, (4, 9), np.uint8, lag=lag)
        got = [m for m in map(enc.push, frames) if m is not None]
        results[lag] = got + enc.drain()
    assert_same_measurements(results[0], cpu_measurements(frames, 5))
    assert_same_measurements(results[1], results[0])


def test_slots_alternate_and_collect_before_reuse(fake_gpu):
    enc = CudaEncoder(SEED, 3, (2, 2), np.uint8)
    for i in range(10):
        enc.push(np.full((2, 2), i, np.uint8))
    enc.drain()
    log = fake_gpu.instances[-1].log
    assert [e for e in log if e[0] == "launch"] == [
        ("launch", 0, 3), ("launch", 1, 3), ("launch", 0, 3), ("launch", 1, 1)
    ]
    # group g's frames go to slot g % 2, frame b to position b
    staged = [e for e in log if e[0] == "host"]
    assert staged == [("host", (i // 3) % 2, i % 3) for i in range(10)]
    # lag 1: group g - 1 is collected right after group g is launched
    assert log.index(("collect", 0)) == log.index(("launch", 1, 3)) + 1


def test_invalid_frames_change_nothing(fake_gpu):
    B, shape = 4, (3, 5)
    frames = make_movie(np.random.default_rng(1), 9, shape, np.float32)
    enc = CudaEncoder(SEED, B, shape, np.float32)
    got = []
    for i, frame in enumerate(frames):
        if i == 2:
            with pytest.raises(TcsValueError, match=r"frame 2 has shape \(3, 6\), expected \(3, 5\)"):
                enc.push(np.zeros((3, 6), np.float32))
            with pytest.raises(TcsValueError, match="frame 2 has dtype float64, expected float32"):
                enc.push(frame.astype(np.float64))
            bad = frame.copy()
            bad[1, 1] = np.nan
            with pytest.raises(TcsValueError, match="frame 2 contains NaN or infinite values"):
                enc.push(bad)
            with pytest.raises(TcsValueError, match=r"frame 2 has shape \(2, 5\)"):
                enc.push(FakeDeviceArray(np.zeros((2, 5), np.float32)))
            with pytest.raises(TcsValueError, match="frame 2 has dtype uint16"):
                enc.push(FakeDeviceArray(np.zeros(shape, np.uint16)))
            assert enc.frames_pushed == 2
        m = enc.push(frame)
        if m is not None:
            got.append(m)
    assert_same_measurements(got + enc.drain(), cpu_measurements(frames, B))


def test_device_frames_skip_the_host_path(fake_gpu):
    B, shape = 3, (4, 6)
    frames = make_movie(np.random.default_rng(2), 8, shape, np.uint32)
    enc = CudaEncoder(SEED, B, shape, np.uint32)
    got = []
    for i, frame in enumerate(frames):
        m = enc.push(FakeDeviceArray(frame) if i % 2 else frame)
        if m is not None:
            got.append(m)
    assert_same_measurements(got + enc.drain(), cpu_measurements(frames, B))
    kinds = [e[0] for e in fake_gpu.instances[-1].log if e[0] in ("host", "device")]
    assert kinds == ["host", "device"] * 4


@pytest.mark.parametrize("lag", [0, 1])
def test_nonfinite_device_frame_raises_at_push(fake_gpu, lag):
    """As on the CPU: the bad frame raises at push and changes nothing."""
    B, shape = 4, (3, 3)
    frames = make_movie(np.random.default_rng(3), 9, shape, np.float32)
    enc = CudaEncoder(SEED, B, shape, np.float32, lag=lag)
    got = []
    for i, frame in enumerate(frames):
        if i == 5:
            bad = frame.copy()
            bad[2, 2] = np.inf
            with pytest.raises(TcsValueError, match="frame 5 contains NaN or infinite values"):
                enc.push(FakeDeviceArray(bad))
            assert enc.frames_pushed == 5
        m = enc.push(FakeDeviceArray(frame))
        if m is not None:
            got.append(m)
    assert_same_measurements(got + enc.drain(), cpu_measurements(frames, B))


@pytest.mark.parametrize("lag", [0, 1])
def test_kernel_flag_backstop_raises_when_collected(fake_gpu, lag, monkeypatch):
    """A frame that passed the check but holds inf when the kernel reads it
    (a racing stream) is reported when its group is collected."""
    monkeypatch.setattr(FakeBackend, "trust_device_frames", True)
    B, shape = 4, (3, 3)
    enc = CudaEncoder(SEED, B, shape, np.float32, lag=lag)
    good = np.ones(shape, np.float32)
    bad = good.copy()
    bad[2, 2] = np.inf
    for _ in range(B):
        enc.push(good)
    for b in range(B):
        frame = FakeDeviceArray(bad if b == 1 else good)
        if b < B - 1 or lag == 1:
            enc.push(frame)  # with lag=1 the group is only collected later
        else:
            with pytest.raises(TcsValueError, match="frame 5 contains NaN or infinite values"):
                enc.push(frame)
    if lag == 1:
        with pytest.raises(TcsValueError, match="frame 5 contains NaN or infinite values"):
            enc.drain()


def test_finished_and_closed_encoders_refuse_frames(fake_gpu):
    frame = np.zeros((2, 2), np.uint16)
    enc = CudaEncoder(SEED, 2, (2, 2), np.uint16)
    enc.push(frame)
    assert [m.n_frames for m in enc.drain()] == [1]
    with pytest.raises(TcsValueError, match="drained"):
        enc.push(frame)
    with CudaEncoder(SEED, 2, (2, 2), np.uint16) as enc:
        assert not enc.closed and "CudaEncoder" in repr(enc)
    assert enc.closed and fake_gpu.instances[-1].closed
    with pytest.raises(TcsValueError, match="closed"):
        enc.push(frame)
    assert enc.drain() == []
    enc.close()  # idempotent


def test_make_encoder_cuda(fake_gpu):
    enc = make_encoder("cuda", SEED, 4, (3, 3), np.uint8)
    assert isinstance(enc, CudaEncoder) and enc.device == "cuda" and enc.device_id == 0
    enc = make_encoder("cuda:1", SEED, 4, (3, 3), np.uint8)
    assert enc.device_id == 1


def test_writer_device_cuda_writes_the_cpu_file(fake_gpu, tmp_path):
    """The lead's writer with the CUDA encoder's lagged push and list-valued
    flush: same measurements as the CPU writer."""
    frames = make_movie(np.random.default_rng(4), 23, (20, 30), np.uint16)
    try:
        tcscodec.write(tmp_path / "gpu.tcs", frames, B=5, seed=SEED, device="cuda", tile=16)
    except TypeError as exc:  # the writer predates device=
        pytest.skip(f"tcscodec.write has no device option: {exc}")
    tcscodec.write(tmp_path / "cpu.tcs", frames, B=5, seed=SEED, device="cpu", tile=16)
    with tcscodec.open(tmp_path / "gpu.tcs") as g, tcscodec.open(tmp_path / "cpu.tcs") as c:
        assert g.n_frames == c.n_frames == 23
        for group in range(5):
            assert np.array_equal(g.measurements(group), c.measurements(group))
            assert np.array_equal(
                g.measurements(group), encode_group(frames[group * 5 : group * 5 + 5], SEED, 5)
            )


# --- CPU only: the real CuPy backend on a fake CuPy running the g++ shim ------------


@pytest.fixture(scope="module")
def shim_lib(tmp_path_factory):
    if GXX is None:
        pytest.skip("g++ is not on PATH")
    return build_shim(tmp_path_factory.mktemp("shim"))


@pytest.fixture
def fake_cupy(monkeypatch, shim_lib):
    return fake_cupy_module.install(monkeypatch, shim_lib)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_cupy_backend_on_fake_cupy(fake_cupy, dtype):
    """_CupyBackend's buffers, pointers and launches, numpy and device input."""
    cp = fake_cupy
    rng = np.random.default_rng(10 + dtype.itemsize)
    for shape in ((1, 1), (7, 130), (33, 200), (16, 256)):
        for B, n_frames in ((2, 5), (10, 23), (64, 64)):
            frames = make_movie(rng, n_frames, shape, dtype)
            want = cpu_measurements(frames, B)
            wide = cp.zeros((n_frames, shape[0], 2 * shape[1]), dtype)
            wide[:, :, ::2] = frames
            inputs = {
                "numpy": list(frames),
                "device": list(cp.asarray(frames)),
                "strided device": list(wide[:, :, ::2]),
                "mixed": [cp.asarray(f) if i % 3 == 1 else f for i, f in enumerate(frames)],
            }
            for (kind, seq), lag, masks in zip(
                inputs.items(), (0, 1, 1, 0), ("fused", "packed", "fused", "packed"), strict=True
            ):
                with CudaEncoder(SEED, B, shape, dtype, lag=lag, masks=masks, staging=3) as enc:
                    got = [m for m in map(enc.push, seq) if m is not None] + enc.drain()
                assert_same_measurements(got, want, f"{kind} input, {shape}, B={B}, lag={lag}, {masks}")


def test_cupy_backend_nonfinite_device_frames(fake_cupy, monkeypatch):
    cp = fake_cupy
    frames = np.ones((12, 9, 256), np.float32)
    frames[6, 3, 100] = -np.inf
    with CudaEncoder(SEED, 4, (9, 256), np.float32) as enc:
        for frame in cp.asarray(frames[:6]):
            enc.push(frame)
        with pytest.raises(TcsValueError, match="frame 6 contains NaN or infinite values"):
            enc.push(cp.asarray(frames[6]))
        assert enc.frames_pushed == 6
    # the kernel's flag, when the push-time check is bypassed (a racing stream)
    monkeypatch.setattr(cuda_encoder._CupyBackend, "all_finite", lambda self, arr, frame: True)
    with CudaEncoder(SEED, 4, (9, 256), np.float32) as enc:  # lag 1
        assert enc._backend.vec == [True, True]
        for frame in cp.asarray(frames[:7]):
            assert enc.push(frame) is None
        m = enc.push(cp.asarray(frames[7]))  # launches group 1, returns clean group 0
        assert m.group == 0
        with pytest.raises(TcsValueError, match="frame 6 contains NaN or infinite values"):
            enc.drain()
    with CudaEncoder(SEED, 4, (9, 256), np.float32, lag=0) as enc:
        for frame in cp.asarray(frames[4:7]):
            enc.push(frame)
        with pytest.raises(TcsValueError, match="frame 2 contains NaN or infinite values"):
            enc.push(cp.asarray(frames[7]))
        # the flag is preset at every launch: a clean group after a bad one passes
        got = [m for m in map(enc.push, cp.asarray(frames[8:12])) if m is not None]
        assert [m.group for m in got] == [1]
        assert np.array_equal(got[0].data, encode_group(frames[8:12], SEED, 4))


def test_encode_group_device_on_fake_cupy(fake_cupy):
    cp = fake_cupy
    from tcscodec.masks import packed_masks

    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        for shape in ((1, 1), (65, 63), (16, 256)):
            frames = make_movie(rng, 7, shape, dtype)
            want = encode_group(frames, SEED, 10)
            words = cp.empty((10, shape[0], (shape[1] + 63) // 64), np.uint64)
            module = cuda_encoder.load_module()
            module.get_function(cuda_encoder.MASK_WORDS_KERNEL)(
                cuda_encoder.launch_config(words.size)[:1], (cuda_encoder.BLOCK_SIZE,),
                cuda_encoder.mask_words_args(cuda_encoder.mask_key(SEED), 10, *shape, words.data.ptr),
            )
            assert np.array_equal(words.get(), packed_masks(SEED, 10, *shape))
            pitched = cp.zeros((7, shape[0], shape[1] + 40), dtype)
            pitched[:, :, : shape[1]] = frames
            for stack, w in ((cp.asarray(frames), None), (cp.asarray(frames), words),
                             (pitched[:, :, : shape[1]], None)):
                got = cuda_encoder.encode_group_device(stack, SEED, 10, words=w).get()
                assert np.array_equal(got.view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}"))
    bad = np.ones((3, 4, 4), np.float32)
    bad[2, 1, 1] = np.nan
    with pytest.raises(TcsValueError, match="frame 2 contains NaN or infinite values"):
        cuda_encoder.encode_group_device(cp.asarray(bad), SEED)
    with pytest.raises(TcsValueError, match="a group holds 1..B=2 frames, got 3"):
        cuda_encoder.encode_group_device(cp.asarray(bad), SEED, 2)


def test_bench_runs_on_fake_cupy(fake_cupy, tmp_path):
    """bench/encode_gpu.py end to end on the fake (tiny sizes): no crash,
    JSON with every figure; the numbers themselves mean nothing here."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "encode_gpu.py"
    spec = importlib.util.spec_from_file_location("encode_gpu_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--size", "64", "--B", "2", "4", "--frames", "12", "--reps", "2",
                "--copy-mib", "1", "--tile", "32", "--threads", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert set(result["kernel"]) == {"B=2,fused", "B=2,packed", "B=4,fused", "B=4,packed"}
    for e2e in result["end_to_end"].values():
        assert e2e["bottleneck"] in e2e["stages_frames_per_s"]
        assert e2e["encoder_frames_per_s"] > 0
        assert e2e["writer_frames_per_s"] is None or e2e["writer_frames_per_s"] > 0


# --- GPU ---------------------------------------------------------------------------

def _cupy():
    import cupy

    return cupy


def _encode_all(enc, frames):
    got = [m for m in map(enc.push, frames) if m is not None]
    return got + enc.drain()


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("masks", ["fused", "packed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gpu_matches_cpu_numpy_input(dtype, masks):
    rng = np.random.default_rng(dtype.itemsize)
    for shape in ((1, 1), (7, 130), (65, 63), (33, 200), (64, 256)):
        for B, n_frames in ((2, 5), (10, 23), (30, 61), (64, 64)):
            frames = make_movie(rng, n_frames, shape, dtype)
            want = cpu_measurements(frames, B)
            for lag in (0, 1):
                with CudaEncoder(SEED, B, shape, dtype, lag=lag, masks=masks) as enc:
                    assert_same_measurements(_encode_all(enc, frames), want)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gpu_max_values_at_B64(dtype):
    shape = (33, 200)
    top = np.iinfo(dtype).max if dtype.kind == "u" else np.finfo(np.float32).max
    frames = np.full((64, *shape), top, dtype)
    with CudaEncoder(SEED, 64, shape, dtype) as enc:
        assert_same_measurements(_encode_all(enc, frames), cpu_measurements(frames, 64))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gpu_cupy_input(dtype):
    cp = _cupy()
    rng = np.random.default_rng(5)
    for shape in ((7, 130), (64, 256)):
        frames = make_movie(rng, 25, shape, dtype)
        want = cpu_measurements(frames, 10)
        with CudaEncoder(SEED, 10, shape, dtype) as enc:
            assert_same_measurements(_encode_all(enc, cp.asarray(frames)), want)
        # non-contiguous device frames: a strided view
        wide = cp.zeros((25, shape[0], 2 * shape[1]), dtype)
        wide[:, :, ::2] = cp.asarray(frames)
        with CudaEncoder(SEED, 10, shape, dtype) as enc:
            assert_same_measurements(_encode_all(enc, wide[:, :, ::2]), want)


@pytest.mark.gpu
@requires_cuda
def test_gpu_device_frame_buffer_may_be_reused_after_push():
    """push copies device frames: overwriting the pushed buffer right after
    (on the caller's stream) must not change the measurement."""
    cp = _cupy()
    frames = make_movie(np.random.default_rng(6), 20, (64, 256), np.uint16)
    buf = cp.empty((64, 256), np.uint16)
    with CudaEncoder(SEED, 10, (64, 256), np.uint16) as enc:
        got = []
        for frame in frames:
            buf.set(frame)
            m = enc.push(buf)
            buf.fill(12345)  # the caller reuses its buffer at once
            if m is not None:
                got.append(m)
        got += enc.drain()
    assert_same_measurements(got, cpu_measurements(frames, 10))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", ["uint8", "float32", "uint16", "uint32"])
def test_gpu_torch_cuda_input(dtype):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    frames = make_movie(np.random.default_rng(7), 21, (33, 200), dtype)
    try:
        tensor = torch.from_numpy(frames).cuda()
        _cupy().asarray(tensor[0])
    except (TypeError, KeyError, RuntimeError) as exc:  # dtype without torch/CuPy interop
        pytest.skip(f"torch {dtype} CUDA tensors cannot be shared: {exc}")
    with CudaEncoder(SEED, 10, (33, 200), dtype) as enc:
        assert_same_measurements(_encode_all(enc, tensor), cpu_measurements(frames, 10))


@pytest.mark.gpu
@requires_cuda
def test_gpu_nonfinite_device_frame():
    cp = _cupy()
    frames = make_movie(np.random.default_rng(12), 12, (9, 256), np.float32)
    bad = frames[6].copy()
    bad[3, 100] = np.nan
    with CudaEncoder(SEED, 4, (9, 256), np.float32) as enc:
        got = []
        for i, frame in enumerate(cp.asarray(frames)):
            if i == 6:
                with pytest.raises(TcsValueError, match="frame 6 contains NaN or infinite values"):
                    enc.push(cp.asarray(bad))
                assert enc.frames_pushed == 6
            m = enc.push(frame)
            if m is not None:
                got.append(m)
        got += enc.drain()
    assert_same_measurements(got, cpu_measurements(frames, 4))
    # the kernel's own flag (encode_group_device)
    with pytest.raises(TcsValueError, match="frame 2 contains NaN or infinite values"):
        cuda_encoder.encode_group_device(cp.asarray(np.stack([frames[0], frames[1], bad])), SEED)


@pytest.mark.gpu
@requires_cuda
def test_gpu_wrong_device_frames():
    cp = _cupy()
    with CudaEncoder(SEED, 4, (8, 8), np.uint16) as enc:
        with pytest.raises(TcsValueError, match=r"frame 0 has shape \(8, 9\)"):
            enc.push(cp.zeros((8, 9), np.uint16))
        with pytest.raises(TcsValueError, match="frame 0 has dtype uint8"):
            enc.push(cp.zeros((8, 8), np.uint8))
        assert enc.frames_pushed == 0


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_gpu_encode_group_device_and_mask_words(dtype):
    cp = _cupy()
    from tcscodec.masks import packed_masks

    rng = np.random.default_rng(8)
    for shape in ((1, 1), (65, 63), (33, 200), (128, 4096)):
        words = cp.empty((30, *shape[:1], (shape[1] + 63) // 64), np.uint64)
        module = cuda_encoder.load_module()
        grid, block = cuda_encoder.launch_config(words.size)
        module.get_function(cuda_encoder.MASK_WORDS_KERNEL)(
            (grid,), (block,),
            cuda_encoder.mask_words_args(cuda_encoder.mask_key(SEED), 30, *shape, words.data.ptr),
        )
        assert np.array_equal(words.get(), packed_masks(SEED, 30, *shape))
        frames = make_movie(rng, 17, shape, dtype)
        want = encode_group(frames, SEED, 30)
        for w in (None, words):
            got = cuda_encoder.encode_group_device(cp.asarray(frames), SEED, 30, words=w)
            assert np.array_equal(got.get().view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}"))
        # pitched rows: vector path with a scalar tail
        pitched = cp.zeros((17, shape[0], shape[1] + 40), dtype)
        pitched[:, :, : shape[1]] = cp.asarray(frames)
        got = cuda_encoder.encode_group_device(pitched[:, :, : shape[1]], SEED, 30)
        assert np.array_equal(got.get().view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}"))


@pytest.mark.gpu
@requires_cuda
def test_gpu_writer_device_cuda(tmp_path):
    frames = make_movie(np.random.default_rng(9), 37, (96, 128), np.uint16)
    tcscodec.write(tmp_path / "gpu.tcs", frames, B=10, seed=SEED, device="cuda", tile=64)
    with tcscodec.open(tmp_path / "gpu.tcs") as r:
        for group in range(4):
            want = encode_group(frames[group * 10 : group * 10 + 10], SEED, 10)
            assert np.array_equal(r.measurements(group), want)
