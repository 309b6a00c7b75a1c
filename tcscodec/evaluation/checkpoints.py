"""Training checkpoints as registered decoders, to evaluate weights before they ship.

:func:`checkpoint_decoder` registers the learned decoder with a checkpoint's
network under a name of its own; :func:`with_checkpoint` swaps that name in
for ``"tcs-unfold"`` in a list of decoders.  The rows of such a decoder are
then made through the normal decoding path (:meth:`tcscodec.TcsReader.decode_group`),
as users run the shipped weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import TcsValueError

if TYPE_CHECKING:  # torch is imported only when a checkpoint is loaded
    from ..decoders.learned import UnfoldDecoder

__all__ = ["CheckpointFactory", "checkpoint_decoder", "with_checkpoint"]


class CheckpointFactory:
    """A registry entry that builds the learned decoder around one checkpoint's network.

    The decoder registry holds, per name, what builds a decoder (called as
    ``entry(device=..., **options)``) and carries the flags the reader and
    the tiling engine read before building one (``receptive_margin``,
    ``uses_motion``, ``uses_context``): a decoder class is one such entry,
    this is another.  The checkpoint is loaded once, by
    :meth:`~tcscodec.decoders.learned.UnfoldDecoder.from_checkpoint`; every
    decoder built shares that network.

    ``context=False`` withholds the neighbouring groups' context from a
    network trained with it (an ablation; ``bench/context_ablation.py``).
    """

    #: the registry name, set by :func:`~tcscodec.decoders.base.register_decoder`
    name = ""

    def __init__(self, path, *, context: bool = True):
        from ..decoders.learned import UnfoldDecoder

        self.prototype = UnfoldDecoder.from_checkpoint(path)
        self.checkpoint = self.prototype.checkpoint
        self.step = self.prototype.step
        self.receptive_margin = self.prototype.receptive_margin
        self.uses_motion = self.prototype.uses_motion
        self.uses_context = self.prototype.uses_context and bool(context)

    def __call__(self, device: str = "cpu", **options) -> UnfoldDecoder:
        dec = type(self.prototype)(device, net=self.prototype.net, motion_net=self.prototype.motion_net,
                                   long_net=self.prototype.long_net, **options)
        dec.name, dec.checkpoint, dec.step = self.name, self.checkpoint, self.step
        dec.uses_context = self.uses_context
        return dec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.checkpoint!r})"


def checkpoint_decoder(path, *, name: str | None = None) -> str:
    """Register the learned decoder with the network of a training checkpoint.

    ``path`` is a ``checkpoint.pt`` of ``tcscodec train`` (``{"model",
    "config", "step", ...}``).  Registers a :class:`CheckpointFactory` of
    :class:`~tcscodec.decoders.learned.UnfoldDecoder` bound to that network
    under ``name`` (default ``"tcs-unfold@step<N>"``) and returns the name,
    to pass in ``evaluate(decoders=...)``, so the weights can be evaluated
    through the normal decoding path before they ship.  A name already
    registered is a ValueError.
    """
    from ..decoders.base import available_decoders, register_decoder

    factory = CheckpointFactory(path)
    name = name or f"tcs-unfold@step{'?' if factory.step is None else factory.step}"
    if name in available_decoders():
        raise TcsValueError(f"decoder {name!r} is already registered")
    register_decoder(name)(factory)
    return name


def with_checkpoint(decoders: Sequence[str], checkpoint) -> list[str]:
    """``decoders`` with the network of ``checkpoint`` (registered by
    :func:`checkpoint_decoder`) in place of ``"tcs-unfold"`` (and of
    ``"tcs-unfold/still"`` and ``"tcs-unfold/motion"``, keeping the
    suffix), or first when the list has none of them."""
    from .run import MOTION_SUFFIX, STILL_SUFFIX

    name = checkpoint_decoder(checkpoint)
    swap = {"tcs-unfold" + suffix: name + suffix for suffix in ("", STILL_SUFFIX, MOTION_SUFFIX)}
    out = [swap.get(d, d) for d in decoders]
    if not set(out) & set(swap.values()):
        out.insert(0, name)
    return out
