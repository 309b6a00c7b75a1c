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

__all__ = ["UnfoldDecoder", "MODEL_NAME"]

MODEL_NAME = "tcs-unfold"


@register_decoder(MODEL_NAME)
class UnfoldDecoder(Decoder):
    """Deep-unfolding decoder trained on simulated in-situ EM movies.

    One model for every B (2..64; trained on 2..32) and any binary masks.
    It outputs denoised frames.  Options: ``half`` (float16 on CUDA).

    Parameters
    ----------
    device : str
        "cpu" or "cuda".
    net : UnfoldNet, optional
        Use this network instead of the shipped weights (training, tests).
    """

    receptive_margin = 32
    uses_motion = True
    #: the training checkpoint of the network (:meth:`from_checkpoint`), else None
    checkpoint: str | None = None
    #: the training step that checkpoint records, else None
    step: int | None = None

    def __init__(self, device: str = "cpu", net: UnfoldNet | None = None, half: bool = False, **options):
        if options:
            raise TcsValueError(f"decoder {MODEL_NAME!r} takes no option(s) {', '.join(sorted(options))} "
                                f"(only 'half'); GAP-TV's options need decoder='gap-tv'")
        super().__init__(device)
        if net is None:
            state, rec = weights.load_state(MODEL_NAME)
            net = UnfoldNet(UnfoldConfig.from_dict(rec["config"]))
            net.load_state_dict(state)
        self.net = net.to(device).eval()
        self.half = half and str(device).startswith("cuda")
        self.uses_context = bool(self.net.config.context)

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", **options) -> UnfoldDecoder:
        """The decoder with the network of a training checkpoint.

        ``path`` is a ``checkpoint.pt`` of ``tcscodec train`` (``{"model",
        "config", "step", ...}``, the network's config under
        ``config["model"]``) or a bare state dict (default
        :class:`UnfoldConfig`).  Loaded with ``weights_only=True``: tensors
        and plain containers only, nothing in the file runs.  The decoder
        records :attr:`checkpoint` and :attr:`step`; ``device`` and
        ``options`` as for the constructor.
        """
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
        cfg = ck.get("config", {})
        model_cfg = cfg.get("model", cfg) if isinstance(cfg, dict) else {}
        net = UnfoldNet(UnfoldConfig.from_dict(model_cfg))
        net.load_state_dict(ck["model"] if "model" in ck else ck)
        dec = cls(device, net=net, **options)
        dec.checkpoint, dec.step = str(path), ck.get("step")
        return dec

    def decode(self, y: torch.Tensor, masks: torch.Tensor, context: torch.Tensor | None = None,
               shifts: torch.Tensor | None = None) -> torch.Tensor:
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
            x = self.net(y.float(), masks.float(), context, shifts=shifts).float()
        return x[..., :h, :w]
