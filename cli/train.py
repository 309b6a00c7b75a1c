"""``tcscodec train``: train (or resume) the learned decoder and export it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from .common import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/tcs-unfold"),
              show_default=True, help="Run folder: checkpoint.pt, log.jsonl, config.json. Resumes if present.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file of TrainConfig fields (see tcscodec.training.TrainConfig).")
@click.option("--seed", type=int, help="Override the config's seed.")
@click.option("--steps", type=int, help="Override the config's number of steps.")
@click.option("--threads", type=int, help="Torch threads [config: 2].")
@click.option("--textures", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of real 2-D micrographs (*.npy) to move along synthetic paths (optional).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--stop-at", type=int, help="Stop this call at that step (checkpointed; run again to go on).")
@click.option("--export", "do_export", is_flag=True,
              help="When training ends, write the weights into the package's zoo with their SHA-256.")
@click.option("--export-as", type=click.Choice(["tcs-unfold", "tcs-unfold-motion", "tcs-unfold-long"]),
              help="The zoo entry --export writes [tcs-unfold-motion for a run with motion compensation in "
                   "the loop, else tcs-unfold]; tcs-unfold-long: the weights for still groups of 48 frames "
                   "or more.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(out_dir, config_file, seed, steps, threads, textures, device, stop_at, do_export, export_as, quiet):
    """Train the learned decoder 'tcs-unfold' on simulated EM movies.

    Reproducible: the same config and seed give the same weights (on the
    same platform and torch version), whether or not the run was stopped and
    resumed. Checkpoints every few hundred steps; run the same command again
    to resume.
    """
    from tcscodec.training import TrainConfig, export
    from tcscodec.training import train as run_training

    fields = json.loads(config_file.read_text()) if config_file else {}
    for key, value in (("seed", seed), ("steps", steps), ("threads", threads),
                       ("texture_dir", str(textures) if textures else None)):
        if value is not None:
            fields[key] = value
    cfg = TrainConfig.from_dict(fields)
    ckpt = run_training(cfg, out_dir, progress=not quiet, log=click.echo, device=device, stop_at=stop_at)
    click.echo(f"checkpoint: {ckpt}")
    if do_export:
        command = "tcscodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        path = export(ckpt, command=command, name=export_as)
        click.echo(f"exported {path}")
