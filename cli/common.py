"""What every ``tcscodec`` command shares: click's context settings, safe
printing of strings from files, and the option checks used by several
commands.  Imports nothing else of the CLI, so every command module can
import it.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["CONTEXT", "safe_text", "check_output", "parse_quant_step", "GroupSize"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def safe_text(text) -> str:
    """``text`` with control and format characters escaped (``\\x1b``,
    ``\\u202e``): user strings from a file (metadata, names) must not move
    the cursor, clear the terminal or reorder what is printed."""
    import unicodedata

    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else
                   (ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                    if unicodedata.category(ch) != "Cs" else f"\\u{ord(ch):04x}")
                   for ch in text)


def check_output(path: Path, force: bool) -> None:
    """Refuse to replace an existing ``path`` unless ``--force`` was given."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to replace it")


def parse_quant_step(value: str):
    """``--quantize``: "auto" or a step > 0 (a click error otherwise)."""
    if value == "auto":
        return value
    try:
        step = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number", param_hint="--quantize") from None
    if not step > 0:
        raise click.BadParameter("must be > 0", param_hint="--quantize")
    return step


class GroupSize(click.ParamType):
    """``-B``: frames per group, an integer in 2..64, or ``auto``."""

    name = "2..64|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            B = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither an integer in 2..64 nor 'auto'", param, ctx)
        if not 2 <= B <= 64:
            self.fail(f"{B} is not in 2..64 (or 'auto')", param, ctx)
        return B
