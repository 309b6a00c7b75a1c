"""``python -m tcscodec``: the command line."""

from tcscodec.cli.main import main

main(prog_name="tcscodec")
