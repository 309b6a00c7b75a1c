"""``tcs-unfold``: the learned decoder (architecture :mod:`.unfold_net`,
weights from :mod:`tcscodec.weights`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import weights
from ..errors import TcsValueError
from .base import Decoder, register_decoder
from .unfold_net import UnfoldConfig, UnfoldNet

__all__ = ["UnfoldDecoder", "MODEL_NAME", "MOTION_MODEL_NAME", "LONG_MODEL_NAME", "LONG_GROUP_FRAMES",
           "RIGID_START_ITERATIONS"]

MODEL_NAME = "tcs-unfold"
#: weights fine-tuned with motion compensation in the loop: they decode the
#: groups reconstructed in the moving frame; the others keep MODEL_NAME's
MOTION_MODEL_NAME = "tcs-unfold-motion"
#: weights fine-tuned on groups of 2-64 frames (MODEL_NAME's were trained on
#: 2-32): they decode still groups of LONG_GROUP_FRAMES frames or more
LONG_MODEL_NAME = "tcs-unfold-long"
#: still groups this long or longer use LONG_MODEL_NAME's weights.  Measured
#: on the bench six and the 17 unseen movies (bench/results/long_groups.md):
#: against MODEL_NAME's, +0.63 dB mean at 48 frames and +0.81 at 60 (up to
#: +3.6, none more than 0.24 dB worse), but -3.4 dB on one movie at 40 and
#: up to -7.4 at 20 (bench/results/v14_check.md)
LONG_GROUP_FRAMES = 48
#: iterations of the rigid-scene solution (:func:`.rigid_tv.rigid_tv`) the
#: motion network starts from where the path is smooth (``rigid_start``)
RIGID_START_ITERATIONS = 60


@register_decoder(MODEL_NAME)
class UnfoldDecoder(Decoder):
    """Deep-unfolding decoder trained on simulated in-situ EM movies.

    One model for every B (2..64; its still weights trained on 2..32) and
    any binary masks.
    It outputs denoised frames.  Options: ``half`` (float16 on CUDA).

    Three sets of weights of one architecture ship: ``tcs-unfold`` decodes
    still groups, ``tcs-unfold-long`` (where shipped; fine-tuned on groups
    of up to 64 frames) still groups of :data:`LONG_GROUP_FRAMES` frames or
    more, and ``tcs-unfold-motion`` (where shipped; fine-tuned with motion
    compensation in the loop) the groups decoded in the moving frame
    (``shifts`` given).

    Parameters
    ----------
    device : str
        "cpu" or "cuda".
    net : UnfoldNet, optional
        Use this network instead of the shipped weights (training, tests);
        it decodes moving and long groups too unless ``motion_net`` and
        ``long_net`` are given.
    motion_net : UnfoldNet, optional
        The network for groups decoded in the moving frame.
    long_net : UnfoldNet, optional
        The network for still groups of :data:`LONG_GROUP_FRAMES` frames or
        more.
    """

    receptive_margin = 32
    uses_motion = True
    takes_rigid_start = True
    #: the training checkpoint of the network (:meth:`from_checkpoint`), else None
    checkpoint: str | None = None
    #: the training step that checkpoint records, else None
    step: int | None = None

    def __init__(self, device: str = "cpu", net: UnfoldNet | None = None, half: bool = False,
                 motion_net: UnfoldNet | None = None, long_net: UnfoldNet | None = None, **options):
        if options:
            raise TcsValueError(f"decoder {MODEL_NAME!r} takes no option(s) {', '.join(sorted(options))} "
                                f"(only 'half'); GAP-TV's options need decoder='gap-tv'")
        super().__init__(device)
        self.net = (_shipped(MODEL_NAME) if net is None else net).to(device).eval()
        # The shipped motion weights load on the first group decoded in the
        # moving frame; a given network decodes moving groups too.
        self._motion_net = self.net if net is not None and motion_net is None else motion_net
        if self._motion_net is not None:
            self._motion_net = self._checked_net(self._motion_net)
        self._long_net = self.net if net is not None and long_net is None else long_net
        if self._long_net is not None:
            self._long_net = self._checked_net(self._long_net)
        self.half = half and str(device).startswith("cuda")
        self.uses_context = bool(self.net.config.context)

    @property
    def motion_net(self) -> UnfoldNet:
        """The network for groups decoded in the moving frame: the one given,
        else the shipped ``tcs-unfold-motion`` weights (loaded on first use),
        else the still network."""
        if self._motion_net is None:
            shipped = weights.available(MOTION_MODEL_NAME)
            self._motion_net = self._checked_net(_shipped(MOTION_MODEL_NAME)) if shipped else self.net
        return self._motion_net

    @property
    def long_net(self) -> UnfoldNet:
        """The network for still groups of :data:`LONG_GROUP_FRAMES` frames
        or more: the one given, else the shipped ``tcs-unfold-long`` weights
        (loaded on first use), else the still network."""
        if self._long_net is None:
            shipped = weights.available(LONG_MODEL_NAME)
            self._long_net = self._checked_net(_shipped(LONG_MODEL_NAME)) if shipped else self.net
        return self._long_net

    def _checked_net(self, net: UnfoldNet) -> UnfoldNet:
        if net.config.context != self.net.config.context:
            raise TcsValueError("the still, motion and long-group networks must read the same context")
        return net.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", *, moving_only: bool = False,
                        **options) -> UnfoldDecoder:
        """The decoder with the network of a training checkpoint.

        ``path`` is a ``checkpoint.pt`` of ``tcscodec train`` (``{"model",
        "config", "step", ...}``, the network's config under
        ``config["model"]``) or a bare state dict (default
        :class:`UnfoldConfig`).  Loaded with ``weights_only=True``: tensors
        and plain containers only, nothing in the file runs.  The decoder
        records :attr:`checkpoint` and :attr:`step`; ``device`` and
        ``options`` as for the constructor.  With ``moving_only`` the
        checkpoint decodes only the groups decoded in the moving frame and
        the shipped still weights the others (how a motion fine-tune ships).
        """
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = ck.get("config", {})
        model_cfg = cfg.get("model", cfg) if isinstance(cfg, dict) else {}
        net = UnfoldNet(UnfoldConfig.from_dict(model_cfg))
        net.load_state_dict(ck["model"] if "model" in ck else ck)
        dec = cls(device, motion_net=net, **options) if moving_only else cls(device, net=net, **options)
        dec.checkpoint, dec.step = str(path), ck.get("step")
        return dec

    def decode(self, y: torch.Tensor, masks: torch.Tensor, context: torch.Tensor | None = None,
               shifts: torch.Tensor | None = None, rigid_start: bool = False) -> torch.Tensor:
        """Frames of ``(N, h, w)`` measurements (the contract of
        :class:`~.base.Decoder`).  With ``shifts`` and ``rigid_start`` the
        moving-frame network starts from :data:`RIGID_START_ITERATIONS`
        of the rigid-scene solution instead of GAP-TV in the moving frame."""
        f = self.net.config.factor
        h, w = y.shape[-2:]
        ph, pw = -h % f, -w % f
        if ph or pw:
            # Mirror padding keeps the padded pixels a valid measurement.
            mode = "reflect" if h > ph and w > pw else "replicate"
            y = F.pad(y[:, None], (0, pw, 0, ph), mode=mode)[:, 0]
            masks = F.pad(masks, (0, pw, 0, ph), mode=mode)
            if context is not None:
                context = F.pad(context, (0, pw, 0, ph), mode=mode)
        if context is not None:
            context = context.float()
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.half):
            if shifts is not None:
                net = self.motion_net
            else:
                net = self.long_net if masks.shape[1] >= LONG_GROUP_FRAMES else self.net
            rigid = RIGID_START_ITERATIONS if rigid_start and shifts is not None else None
            x = net(y.float(), masks.float(), context, shifts=shifts, rigid_start=rigid).float()
        return x[..., :h, :w]


def _shipped(name: str) -> UnfoldNet:
    """The network of shipped weights ``name`` (SHA-256 checked)."""
    state, rec = weights.load_state(name)
    net = UnfoldNet(UnfoldConfig.from_dict(rec["config"]))
    net.load_state_dict(state)
    return net
