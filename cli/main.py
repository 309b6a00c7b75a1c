"""The ``tcscodec`` command line: the ``main`` group and its commands.

Commands: ``encode``, ``info``, ``decode``, ``decoders``, ``verify``,
``recover`` (:mod:`tcscodec.cli.commands`), ``demo``, ``eval`` and
``train``, each added here explicitly.  Every command has ``--help``.
"""

from __future__ import annotations

import sys

import click

from tcscodec import TcsError, __version__

from .commands import decode, decoders, encode, info, recover, verify
from .common import CONTEXT, safe_text
from .demo import demo
from .eval import eval_
from .train import train

__all__ = ["main"]


def _fail(exc: Exception) -> None:
    if isinstance(exc, OSError) and not isinstance(exc, TcsError) and exc.strerror:
        # "folder/out.tcs: Permission denied", not the errno tuple
        where = exc.filename if exc.filename is not None else ""
        raise click.ClickException(safe_text(f"{where}: {exc.strerror}" if where != "" else exc.strerror))
    raise click.ClickException(safe_text(exc))


class _TcsGroup(click.Group):
    """Turns tcscodec's own errors and every OSError (a missing file, a
    read-only folder, a full disk) into one-line messages and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (TcsError, OSError) as exc:
            _fail(exc)


@click.group(cls=_TcsGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tcscodec")
def main():
    """Temporal compressive sensing codec for electron-microscopy movies.

    \b
    tcscodec encode movie.tif -B 30 -o movie.tcs
    tcscodec info movie.tcs
    tcscodec decode movie.tcs -o decoded.tif
    tcscodec demo              # all of it on a built-in simulated movie
    """


for _command in (encode, info, decode, decoders, verify, recover, demo, eval_, train):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
