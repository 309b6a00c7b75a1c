"""Issue 17: checkpoints load with weights_only=True, and a pinned SHA-256
is checked before anything is unpickled; a crafted pickle never runs."""

import io
import json
import os

import pytest

torch = pytest.importorskip("torch")

from tcscodec import TcsDecoderError, weights  # noqa: E402
from tcscodec.training import TrainConfig, export, initial_state, load_checkpoint, train  # noqa: E402

BASE = dict(steps=1, batch=2, crop=32, n_min=2, n_max=3, pool_movies=2, movie_frames=6, movie_size=48,
            threads=1, model={"stages": 1, "width": 8, "blocks": 1, "factor": 2})


class _Payload:
    """Unpickling this creates a folder: proof that code in a file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def crafted(path, marker, wrap=True):
    buf = io.BytesIO()
    torch.save({"model": _Payload(marker), "config": {}, "step": 0} if wrap else _Payload(marker), buf)
    path.write_bytes(buf.getvalue())
    return path


def test_crafted_init_from_never_runs_even_when_pinned(tmp_path):
    marker = tmp_path / "ran"
    evil = crafted(tmp_path / "evil.pt", marker, wrap=False)
    pinned = weights.sha256_of(evil.read_bytes())  # the attacker also controls the config
    for sha in (pinned, "0" * 64, None):
        cfg = TrainConfig(**BASE, init_from=str(evil), init_sha256=sha)
        with pytest.raises(TcsDecoderError, match=r"evil.pt: not a checkpoint that loads safely .*: "
                                                  r".*nsupported.*GLOBAL posix.mkdir"):
            initial_state(cfg)
        assert not marker.exists()


def test_crafted_checkpoint_never_runs_on_resume_export_or_load(tmp_path):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    run.mkdir()
    crafted(run / "checkpoint.pt", marker)
    (run / "config.json").write_text(json.dumps(TrainConfig(**BASE).to_dict()))
    with pytest.raises(TcsDecoderError, match="checkpoint.pt: not a checkpoint that loads safely"):
        train(TrainConfig(**BASE), run, progress=False, log=lambda s: None)
    with pytest.raises(TcsDecoderError, match="not a checkpoint that loads safely"):
        export(run / "checkpoint.pt", command="x", dest=tmp_path)
    with pytest.raises(TcsDecoderError, match="not a checkpoint that loads safely"):
        load_checkpoint((run / "checkpoint.pt").read_bytes())
    assert not marker.exists()


def test_a_training_checkpoint_loads_with_weights_only(tmp_path):
    """Config, optimiser state, step and the numpy bit generator's state
    (128-bit integers) are all plain data: resuming needs no unsafe load."""
    ckpt = train(TrainConfig(**BASE), tmp_path / "run", progress=False, log=lambda s: None)
    ck = torch.load(ckpt, weights_only=True)
    assert ck["step"] == 1 and ck["rng"]["bit_generator"] == "PCG64"
    assert isinstance(ck["rng"]["state"]["state"], int)  # a 128-bit integer
    assert set(ck) == {"config", "model", "optim", "step", "rng"}


@pytest.mark.parametrize("name", ["tcs-unfold-068a8e78.pt", "tcs-unfold-35ab0e98.pt"])
def test_pinned_parent_weights_load(name):
    """The parents in bench/weights are pinned by their files' SHA-256."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "weights" / name
    digest = weights.sha256_of(path.read_bytes())
    assert digest.startswith(name.split("-")[-1][:-3])
    state = initial_state(TrainConfig(**BASE, init_from=str(path), init_sha256=digest))
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and len(state) == 52
