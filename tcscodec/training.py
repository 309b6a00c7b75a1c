"""Training of the learned decoder ``tcs-unfold`` (``tcscodec train``).

Reproducible from a seed and a :class:`TrainConfig`: the training movies
come from :mod:`tcscodec.simulate` (and, when a folder of real micrographs
is given, from real textures moved along synthetic paths), the masks from
the spec's generator with random seeds, and every random choice from
``numpy.random.Generator`` streams seeded by the config.  Runs on 2 CPU
cores in hours (or on a GPU); checkpoints every ``checkpoint_every`` steps
and resumes from the last checkpoint; :func:`export` writes the weights into
the package with their SHA-256 and the command that made them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TcsValueError
from .format.config import ConfigDict

__all__ = ["TrainConfig", "train", "export", "MoviePool"]


@dataclass(frozen=True)
class TrainConfig(ConfigDict):
    """Everything that determines a training run."""

    seed: int = 0
    steps: int = 20000
    batch: int = 8
    crop: int = 96
    #: group sizes B drawn from [n_min, n_max] per step, as ``n_draw`` says:
    #: "uniform", or "log-uniform" (each size in proportion to log((n+1)/n),
    #: so a wide range keeps the short groups' share of the batches)
    n_min: int = 2
    n_max: int = 32
    n_draw: str = "uniform"
    lr: float = 2e-3
    lr_min: float = 2e-5
    warmup: int = 200
    #: architecture (:class:`tcscodec.decoders.unfold_net.UnfoldConfig`)
    model: dict[str, Any] = field(default_factory=lambda: {"stages": 3, "width": 48, "blocks": 2, "factor": 4})
    #: the pool of simulated movies training crops are drawn from
    pool_movies: int = 256
    movie_frames: int = 40
    movie_size: int = 128
    #: movies of the pool replaced by new ones every `refresh_every` steps
    refresh: int = 4
    refresh_every: int = 25
    #: fraction of pool movies made from real textures (needs texture_dir)
    texture_fraction: float = 0.25
    texture_dir: str | None = None
    #: dose range (e-/px/frame, log-uniform) of the texture movies
    texture_dose: tuple[float, float] = (1.0, 500.0)
    #: mean drift speed range (px/frame, log-uniform, random direction) of
    #: the texture movies; None keeps texture_movie's own draw (uniform 0.1
    #: to 1 px/frame, what v2 and v4 were trained on)
    texture_speed: tuple[float, float] | None = None
    #: start from these weights (a training checkpoint or an exported .pt)
    #: instead of a random init; ``init_sha256`` (of the exported float32
    #: state dict, as in zoo.json) pins them
    init_from: str | None = None
    init_sha256: str | None = None
    #: probability that a sample's measurement is quantised (noise-aware step)
    quant_prob: float = 0.5
    #: largest quantisation step, relative to the measurement's shot-noise std
    quant_max: float = 1.0
    #: for models with ``context``: probability that a present neighbouring
    #: group is withheld anyway (files of one group, random access at the
    #: ends), so the net also learns to decode without it
    context_drop: float = 0.15
    #: fraction of batches decoded with motion compensation, their movies'
    #: true per-frame drift perturbed as an estimate from the file would be
    #: (``motion_error``), so the denoisers learn aligned frames
    motion_prob: float = 0.0
    #: std of the velocity error (px/frame) added to a batch's true drift,
    #: plus a quarter of it as per-frame jitter (px)
    motion_error: float = 0.05
    #: "log-start": mean over samples of log(MSE / MSE of the net's starting
    #: estimate), i.e. the mean dB gained over the start (GAP-TV with a warm
    #: start), so a sample made worse counts as much as one made better;
    #: "ratio-naive": mean of MSE / MSE of Y / sum C (weights low-motion
    #: samples most; it let the net undo GAP-TV on fast-moving ones)
    loss: str = "log-start"
    checkpoint_every: int = 250
    threads: int = 2

    def __post_init__(self):
        self._check_range("texture_dose", "")
        if self.texture_speed is not None:
            self._check_range("texture_speed", " px/frame")
        if self.n_draw not in ("uniform", "log-uniform"):
            raise TcsValueError(f"TrainConfig.n_draw must be 'uniform' or 'log-uniform', got {self.n_draw!r}")
        if self.loss not in ("log-start", "ratio-naive"):
            raise TcsValueError(f"TrainConfig.loss must be 'log-start' or 'ratio-naive', got {self.loss!r}")

    def _check_range(self, name: str, unit: str) -> None:
        """Make field ``name`` a (low, high) tuple of floats (JSON gives a list) with 0 < low <= high."""
        value = tuple(float(v) for v in getattr(self, name))
        if not (len(value) == 2 and 0 < value[0] <= value[1]):
            raise TcsValueError(f"TrainConfig.{name} must be (low, high){unit} with 0 < low <= high, got {value}")
        object.__setattr__(self, name, value)



def _group_size(rng: np.random.Generator, cfg: TrainConfig) -> int:
    """One training step's group size (``cfg.n_draw``)."""
    if cfg.n_draw == "uniform":
        return int(rng.integers(cfg.n_min, cfg.n_max + 1))
    n = int(math.exp(rng.uniform(math.log(cfg.n_min), math.log(cfg.n_max + 1))))
    return min(max(n, cfg.n_min), cfg.n_max)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _texture_images(folder) -> list[np.ndarray]:
    if not folder:
        return []
    images = []
    for p in sorted(Path(folder).glob("*.npy")):
        a = np.load(p)
        if a.ndim == 2 and min(a.shape) >= 256:
            images.append(a.astype(np.float32))
    return images


class MoviePool:
    """A pool of training movies (frames and clean truth as float32),
    refreshed a few movies at a time so the data keep changing.

    Every movie is a pure function of the config's seed and its place in the
    schedule (initial slot k, or the j-th replacement of refresh event e), so
    a run resumed at step s rebuilds exactly the pool it had: resumed runs
    give the same weights as uninterrupted ones.  Crops are drawn from the
    training loop's own generator (``batch(n, rng)``), saved in checkpoints.
    """

    def __init__(self, cfg: TrainConfig):
        from .simulate import random_config, simulate_movie, texture_movie

        self._random_config, self._simulate, self._texture = random_config, simulate_movie, texture_movie
        self.cfg = cfg
        self.textures = _texture_images(cfg.texture_dir)
        self.movies: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * cfg.pool_movies

    def make(self, key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The movie of schedule position ``key`` (a tuple of ints): frames,
        clean and the drift ``(T, 2)`` of each frame's content in px."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, *key])
        size, T = cfg.movie_size, cfg.movie_frames
        if self.textures and rng.uniform() < cfg.texture_fraction:
            img = self.textures[int(rng.integers(len(self.textures)))]
            dose = _log_uniform(rng, *cfg.texture_dose)
            zoom = float(rng.uniform(0.5, 2.0))
            dtype = str(rng.choice(["uint8", "uint16", "uint32"]))
            speed = _log_uniform(rng, *cfg.texture_speed) if cfg.texture_speed is not None else None
            m = self._texture(img, T, rng, dose, shape=(size, size), zoom=zoom, dtype=dtype, speed=speed)
        else:
            m = self._simulate(self._random_config(rng, shape=(size, size), n_frames=T))
        drift = np.asarray(m.meta["drift_px"], np.float64).reshape(-1, 2)
        return m.frames.astype(np.float32), m.clean.astype(np.float32), drift

    def _slots(self, event: int) -> list[int]:
        rng = np.random.default_rng([self.cfg.seed, 2, event])
        return [int(v) for v in rng.integers(0, self.cfg.pool_movies, self.cfg.refresh)]

    def fill(self, step: int = 0, progress: Callable[[int], None] | None = None) -> None:
        """Build the pool as it is at ``step`` (after its refresh events)."""
        keys: dict[int, tuple[int, ...]] = {k: (1, k) for k in range(self.cfg.pool_movies)}
        for event in range(1, step // self.cfg.refresh_every + 1):
            for j, slot in enumerate(self._slots(event)):
                keys[slot] = (3, event, j)
        for i, (slot, key) in enumerate(sorted(keys.items())):
            self.movies[slot] = self.make(key)
            if progress:
                progress(i + 1)

    def refresh(self, step: int) -> None:
        """Refresh event of ``step`` (a multiple of ``refresh_every``)."""
        event = step // self.cfg.refresh_every
        for j, slot in enumerate(self._slots(event)):
            self.movies[slot] = self.make((3, event, j))

    def batch(self, n: int, rng: np.random.Generator, context: bool = False):
        """A batch: frames, clean (batch, n, crop, crop) from random movies,
        times, crops and orientations, and the neighbours: None, or with
        ``context`` per sample the frames of the group before and of the
        group after (up to ``n`` each, fewer at the movie's ends,
        ``(0, crop, crop)`` where absent), and each sample's frame
        displacements ``(batch, n, 2)`` (px, oriented like the crop)."""
        cfg = self.cfg
        c = cfg.crop
        X = np.empty((cfg.batch, n, c, c), np.float32)
        Z = np.empty_like(X)
        neighbours: list | None = [] if context else None
        D = np.empty((cfg.batch, n, 2))
        for i in range(cfg.batch):
            movie = self.movies[int(rng.integers(len(self.movies)))]
            assert movie is not None, "fill() the pool first"
            frames, clean, drift = movie
            T, H, W = frames.shape
            t0 = int(rng.integers(0, T - n + 1))
            y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
            sl = (slice(t0, t0 + n), slice(y0, y0 + c), slice(x0, x0 + c))
            f, z = frames[sl], clean[sl]
            k = int(rng.integers(4))
            before = frames[max(t0 - n, 0):t0, y0:y0 + c, x0:x0 + c]
            after = frames[t0 + n:t0 + 2 * n, y0:y0 + c, x0:x0 + c]
            d = drift[t0:t0 + n]
            if rng.uniform() < 0.5:  # time reversal: motion either way
                f, z, d = f[::-1], z[::-1], d[::-1]
                before, after = after[::-1], before[::-1]
            X[i], Z[i] = np.rot90(f, k, axes=(1, 2)), np.rot90(z, k, axes=(1, 2))
            for _ in range(k):  # np.rot90 takes (y, x) to (W - 1 - x, y)
                d = np.stack([-d[:, 1], d[:, 0]], axis=1)
            D[i] = d
            if neighbours is not None:  # context
                neighbours.append(tuple(
                    np.rot90(g if rng.uniform() >= cfg.context_drop else g[:0], k, axes=(1, 2))
                    for g in (before, after)))
        return X, Z, neighbours, D


def _estimated_shifts(D: np.ndarray, rng: np.random.Generator, cfg: TrainConfig):
    """The shifts a decoder would be given for true displacements ``D``
    (batch, n, 2): relative to each group's middle, with a velocity error
    and per-frame jitter like an estimate's, and zero for samples a decoder
    would decode as still (:meth:`tcscodec.motion.MotionPath.compensated`).
    None when no sample is compensated."""
    from .motion import MotionPath, worth_compensating

    N, n, _ = D.shape
    t = np.arange(n) - (n - 1) / 2
    out = np.zeros_like(D)
    for i in range(N):
        s = MotionPath(D[i], (0,)).group_shifts(0)
        s = s + rng.normal(0, cfg.motion_error, 2) * t[:, None] + rng.normal(0, cfg.motion_error / 4, (n, 2))
        if worth_compensating(s):
            out[i] = s
    return out.astype(np.float32) if out.any() else None


def _spec_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``n`` masks of the spec's generator at a random seed and position."""
    from .masks import masks as spec_masks

    oy, ox = (int(v) for v in rng.integers(0, 4096 - h, 2))
    return spec_masks(int(rng.integers(0, 2**63)), n, 4096, 4096, (oy, oy + h, ox, ox + w)).astype(np.float32)


def _quantise(Y: np.ndarray, n: int, fraction: float) -> np.ndarray:
    """``Y`` rounded to ``fraction`` of its noise step (as ``--quantize``)."""
    from .quantize import noise_step

    step = noise_step(Y, n) * fraction
    return np.floor(Y / step + 0.5) * step if step > 0 else Y


def _measure(X: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, neighbours=None):
    """Masks from the spec's generator (random seed and position) and the
    measurement Y, quantised like ``--quantize auto`` for part of the batch.
    With ``neighbours`` (from :meth:`MoviePool.batch`) also the context
    (N, 2, h, w): each neighbouring group's Y / sum C, measured with the
    same masks (as in a file) and quantised the same way, NaN where absent
    or unmeasured."""
    from .masks import measured_mean

    N, n, h, w = X.shape
    C = np.empty(X.shape, np.float32)
    for i in range(N):
        C[i] = _spec_masks(rng, n, h, w)
    Y = (C * X).sum(1)
    ctx = None if neighbours is None else np.full((N, 2, h, w), np.nan, np.float32)
    for i in range(N):
        fraction = rng.uniform(0, cfg.quant_max) if rng.uniform() < cfg.quant_prob else 0.0
        if fraction:
            Y[i] = _quantise(Y[i], n, fraction)
        for j, g in enumerate(neighbours[i] if neighbours is not None else ()):
            if len(g):
                Cg = C[i, :len(g)]  # every group of a file has the same masks
                Yg = (Cg * g).sum(0)
                if fraction:
                    Yg = _quantise(Yg, len(g), fraction)
                assert ctx is not None  # made with neighbours
                ctx[i, j] = measured_mean(Yg, Cg.sum(0))
    return Y, C, ctx


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def train(cfg: TrainConfig, out_dir, *, progress: bool = True, log: Callable[[str], None] = print,
          device: str = "cpu", stop_at: int | None = None) -> Path:
    """Train (or resume) into ``out_dir``; returns the checkpoint path.

    ``out_dir/checkpoint.pt`` holds model, optimiser, step and random states
    and is rewritten atomically every ``cfg.checkpoint_every`` steps and at
    the end; ``out_dir/log.jsonl`` gets one line per logged step.  A run
    whose checkpoint exists resumes from it (the config must match) and
    gives the same weights as an uninterrupted run.  ``stop_at`` ends this
    call at that step (with a checkpoint), e.g. to train in sessions.
    """
    import torch

    from .decoders.unfold_net import UnfoldConfig, UnfoldNet

    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    torch.manual_seed(cfg.seed)
    net = UnfoldNet(UnfoldConfig.from_dict(cfg.model)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    pool = MoviePool(cfg)
    step = 0
    if cfg.init_from and not ckpt_path.exists():
        net.load_parent_state(initial_state(cfg))
        log(f"starting from {cfg.init_from}")
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, map_location=device)
        if TrainConfig.from_dict(ck["config"]).to_dict() != cfg.to_dict():  # older runs lack newer fields
            raise TcsValueError(f"{ckpt_path} was made with another config; use a new --out folder")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        step = ck["step"]
        rng.bit_generator.state = ck["rng"]
        log(f"resumed from {ckpt_path} at step {step}")
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    if step < end:  # a finished run (e.g. re-run to --export it) needs no movies
        t0 = time.time()
        log(f"building a pool of {cfg.pool_movies} movies ({cfg.movie_frames} x {cfg.movie_size}^2)")
        pool.fill(step)
        log(f"pool ready in {time.time() - t0:.0f} s")

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"config": cfg.to_dict(), "model": net.state_dict(), "optim": opt.state_dict(),
                    "step": step, "rng": rng.bit_generator.state}, tmp)
        tmp.replace(ckpt_path)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", desc="train")
    logf = open(out / "log.jsonl", "a")
    ema = ema_db = ema_start = None
    try:
        while step < end:
            n = _group_size(rng, cfg)
            X, Z, neighbours, D = pool.batch(n, rng, context=net.config.context)
            Y, C, ctx = _measure(X, rng, cfg, neighbours)
            shifts = _estimated_shifts(D, rng, cfg) if cfg.motion_prob and rng.uniform() < cfg.motion_prob else None
            y, c, z = (torch.from_numpy(a).to(device) for a in (Y, C, Z))
            if ctx is not None:
                ctx = torch.from_numpy(ctx).to(device)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            est, start = net(y, c, ctx, shifts=None if shifts is None else torch.from_numpy(shifts).to(device),
                             with_start=True)
            scale, xbar = _scale(y, c)
            mse = (((est - z) / scale[:, None]) ** 2).mean((1, 2, 3)).clamp(min=1e-12)
            # Each sample's error relative to a reference decoder's, so every
            # dose and motion counts alike instead of low-dose noise dominating.
            base = (((xbar[:, None] - z) / scale[:, None]) ** 2).mean((1, 2, 3)).clamp(min=1e-12)
            ref = (((start.detach() - z) / scale[:, None]) ** 2).mean((1, 2, 3)).clamp(min=1e-12)
            if cfg.loss == "log-start":
                loss = torch.log(mse / ref).mean()
            else:
                loss = (mse / base).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            v = float(loss.detach())
            ema = v if ema is None else 0.98 * ema + 0.02 * v
            gain_db = float((10 * torch.log10(base / mse.detach())).mean())  # dB above the naive decoder
            start_db = float((10 * torch.log10(ref / mse.detach())).mean())  # dB above the start
            ema_db = gain_db if ema_db is None else 0.98 * ema_db + 0.02 * gain_db
            ema_start = start_db if ema_start is None else 0.98 * ema_start + 0.02 * start_db
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.2e}", gain=f"{ema_db:+.2f}dB", over_start=f"{ema_start:+.2f}dB", B=n)
            if step % 25 == 0:
                logf.write(json.dumps({"step": step, "loss": v, "ema": ema, "gain_db": gain_db,
                                       "ema_gain_db": ema_db, "gain_start_db": start_db,
                                       "ema_gain_start_db": ema_start, "n": n, "lr": _lr(cfg, step),
                                       "time": time.time()}) + "\n")
                logf.flush()
            if step % cfg.refresh_every == 0:
                pool.refresh(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
    finally:
        logf.close()
        if bar:
            bar.close()
    save()
    return ckpt_path


def _state_bytes(state: dict) -> bytes:
    """The exported form of a state dict (float32, contiguous), whose SHA-256 zoo.json records."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({k: v.float().contiguous() for k, v in state.items()}, buf)
    return buf.getvalue()


def load_checkpoint(source, map_location="cpu", name: str | None = None):
    """``torch.load`` of a checkpoint or state dict with ``weights_only=True``:
    tensors, numbers, strings and plain containers only (a training
    checkpoint's config, step, optimiser state and numpy bit-generator
    state are such), so nothing in the file runs.  ``source`` is a path or
    the file's bytes.  A file that needs more (a crafted pickle) raises
    :class:`~tcscodec.TcsDecoderError`."""
    import io
    import pickle

    import torch

    from .errors import TcsDecoderError

    if name is None:
        name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return torch.load(fh, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is long and suggests weights_only=False: keep what it refused
        parts = [p.strip() for p in str(exc).split("\n\n") if p.strip()] or [type(exc).__name__]
        why = next((p for p in parts if "GLOBAL" in p), parts[0])
        why = why.replace("WeightsUnpickler error:", "").strip().split(". ")[0].splitlines()[0]
        raise TcsDecoderError(f"{name}: not a checkpoint that loads safely (tensors and plain "
                              f"containers only): {why}") from None


def initial_state(cfg: TrainConfig) -> dict:
    """The state dict ``cfg.init_from`` names (checked against ``cfg.init_sha256``).

    The pinned SHA-256 is that of the exported state (:func:`_state_bytes`,
    the weights files of the zoo and ``bench/weights``, whose file bytes
    it is).  The file's bytes are hashed before anything is unpickled: a
    file that is exactly the pinned one is then loaded; any other (a
    training checkpoint holding the state) is loaded with
    ``weights_only=True`` (nothing in it can run) and its state hashed.
    """
    from . import weights
    from .errors import TcsValueError

    if cfg.init_from is None:
        raise TcsValueError("TrainConfig.init_from names no weights to start from")
    path = Path(cfg.init_from)
    if not path.exists() and (Path(weights.__file__).parent / path.name).exists():
        path = Path(weights.__file__).parent / path.name  # a file of the shipped zoo
    data = path.read_bytes()
    pinned = bool(cfg.init_sha256) and weights.sha256_of(data) == cfg.init_sha256
    loaded = load_checkpoint(data, name=str(path))
    state = loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded
    if cfg.init_sha256 and not pinned:
        digest = weights.sha256_of(_state_bytes(state))
        if digest != cfg.init_sha256:
            raise TcsValueError(f"{path}: weights have SHA-256 {digest[:16]}..., the config's init_sha256 "
                                f"is {cfg.init_sha256[:16]}...")
    return state


def _scale(y, c):
    from .decoders.unfold_net import normalise

    return normalise(y, c.sum(1))


def export(checkpoint, command: str, dest=None, name: str | None = None, extra: dict | None = None) -> Path:
    """Write the model of ``checkpoint`` into the weights zoo.

    Saves ``<name>-<sha8>.pt`` (float32 state dict) into ``dest`` (default:
    the installed :mod:`tcscodec.weights` folder, i.e. the source tree in an
    editable install) and records file, SHA-256, architecture config, the
    training config and ``command`` in ``zoo.json``.  ``name`` defaults to
    ``tcs-unfold-motion`` for a run trained with motion compensation in the
    loop (``motion_prob > 0``: the weights for groups decoded in the moving
    frame) and ``tcs-unfold`` otherwise.  Weights fine-tuned from shipped
    ones (``init_sha256``) keep those weights' record as ``parent``: the
    chain of commands that reproduces them.
    """
    from . import weights
    from .decoders.learned import MODEL_NAME, MOTION_MODEL_NAME

    ck = load_checkpoint(checkpoint)
    if name is None:
        name = MOTION_MODEL_NAME if ck["config"].get("motion_prob", 0) > 0 else MODEL_NAME
    data = _state_bytes(ck["model"])
    digest = weights.sha256_of(data)
    dest = Path(dest) if dest else Path(weights.__file__).parent
    fname = f"{name}-{digest[:8]}.pt"
    zoo_path = dest / "zoo.json"
    zoo = json.loads(zoo_path.read_text()) if zoo_path.exists() else {}
    old = zoo.get(name, {}).get("file")
    (dest / fname).write_bytes(data)
    if old and old != fname and all(r.get("file") != old for k, r in zoo.items() if k != name):
        (dest / old).unlink(missing_ok=True)
    record = {"file": fname, "sha256": digest, "config": ck["config"]["model"], "steps": ck["step"],
              "train_config": ck["config"], "command": command}
    init = ck["config"].get("init_sha256")
    parent = next((r for r in zoo.values() if init and r.get("sha256") == init), None)
    if parent is not None:
        # Fine-tuned from shipped weights: keep how those were made.
        record["parent"] = {k: v for k, v in parent.items() if k != "config"}
    zoo[name] = {**record, **(extra or {})}
    zoo_path.write_text(json.dumps(zoo, indent=1) + "\n")
    return dest / fname
