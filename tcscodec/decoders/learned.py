"""``tcs-unfold``: the learned decoder (architecture :mod:`.unfold_net`,
weights from :mod:`tcscodec.weights`)."""

from __future__ import annotations

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
