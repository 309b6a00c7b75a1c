"""``tcscodec eval``: TCS decoders against conventional codecs at equal real bytes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .common import CONTEXT, parse_quant_step

#: the B of ``--sweep``: a rate-distortion curve from 2 to 64 frames per
#: measurement, and -B auto at three values of its quality knob (tolerance
#: 0.25, the default 0.5, and 2)
SWEEP_B = (2, 4, 8, 16, 32, 64, "auto:0.25", "auto", "auto:2")


def _csv(value: str | None, what: str) -> list[str]:
    if value is None:
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    return [] if items == ["none"] else items


def _load_clean(path: Path):
    import numpy as np

    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from tcscodec.movies import open_movie

    with open_movie(path) as m:
        return np.stack(list(m))


@click.command("eval", context_settings=CONTEXT)
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-B", "B_list", default="10,20,30", show_default=True,
              help="Frames per measurement, comma-separated; 'auto' or 'auto:T' for -B auto files (T: "
                   "--auto-tolerance), which get their own rate-distortion curve.")
@click.option("--sweep", is_flag=True,
              help=f"The rate-distortion sweep: B = {','.join(map(str, SWEEP_B))} (replaces -B).")
@click.option("--clean", type=click.Path(dir_okay=False, path_type=Path),
              help="Noise-free truth (.npy or .tif) to measure against [the raw frames].")
@click.option("--decoders", default="tcs-unfold,gap-tv", show_default=True,
              help="Decoders to run, comma-separated ('none' for none); unavailable ones are skipped. A name "
                   "ending in /motion decodes with motion compensation (as decode --motion auto), /still without.")
@click.option("--codecs", help="Conventional codecs at equal bytes, comma-separated ('none' for none) [the quick "
                               "set: jpeg, jpegxl, h265, av1]; also known: jpeg2000, h264.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluate the learned decoder with this training checkpoint (replaces 'tcs-unfold').")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for table.md, results.json and figure.png [print only].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="Mask seed.")
@click.option("--quantize", "quant_step", default="auto", show_default=True,
              help="Measurement quantisation step as in 'tcscodec encode' ('auto' = 1.5x the "
                   "measurement's shot-noise std; 1 = lossless).")
@click.option("--frames", "n_frames", type=click.IntRange(1), help="Use only the first N frames.")
@click.option("--tv/--no-tv", default=False, show_default=True,
              help="Also follow every codec and decoder by a TV denoiser tuned on the reference (an oracle "
                   "upper bound; minutes per row).")
@click.option("--tv-iterations", type=click.IntRange(1), default=40, show_default=True, help="TV solver iterations.")
@click.option("--bit-depth", type=click.Choice(["8", "10", "12", "16"]),
              help="Force the codecs' sample depth [8 when it loses nothing, else each codec's deepest].")
@click.option("--clean-scale", default="auto", show_default=True,
              help="Gain applied to --clean: 'auto' fits it when the clean movie is in other units "
                   "(off by > 1 %), 'none' keeps it, or a number.")
@click.option("--device", default="cpu", show_default=True, help="Decoding device.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Threads for torch (TV, decoders) and the video encoders.")
@click.option("--name", help="Movie name in the report [INPUT's stem].")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def eval_(input, B_list, sweep, clean, decoders, codecs, checkpoint, out_dir, as_json, seed, quant_step, n_frames,
          tv, tv_iterations, bit_depth, clean_scale, device, threads, name, quiet):
    """Measure PSNR and SSIM of TCS decoding next to JPEG, JPEG 2000, JPEG XL,
    H.264, H.265 and AV1 at the same real bytes as each .tcs file.

    \b
    tcscodec eval movie.tif -B 10,20,30 --clean clean.npy --out results/
    tcscodec eval movie.tif --decoders gap-tv --codecs jpeg,h264 --tv

    For each B the movie is encoded into a .tcs file; each decoder, the naive
    Y/sum(C), the static oracle (with --clean), and every codec with its
    quality searched to the .tcs file's bytes are measured (with --tv each
    also followed by a TV denoiser tuned on the reference: an oracle upper
    bound, slow).
    With two B or more, the rate-distortion curves give each codec's
    Bjøntegaard deltas against the first decoder (BD-PSNR, BD-rate) and,
    with --out, rd.png.
    """
    import numpy as np

    from tcscodec import evaluation as ev
    from tcscodec.movies import open_movie

    if sweep:
        B_list = ",".join(map(str, SWEEP_B))
    try:
        Bs = [ev.grouping(b)[0] for b in B_list.split(",") if b.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{B_list!r}: {exc}", param_hint="-B") from None
    if not Bs or any(isinstance(b, int) and not 2 <= b <= 64 for b in Bs):
        raise click.BadParameter("each B must be in 2..64", param_hint="-B")
    if clean_scale not in ("auto", "none"):
        try:
            clean_scale = float(clean_scale)
        except ValueError:
            raise click.BadParameter("use 'auto', 'none' or a number", param_hint="--clean-scale") from None
    quant_step = parse_quant_step(quant_step)
    dec_names = _csv(decoders, "decoders")
    codec_names = list(ev.QUICK_CODECS) if codecs is None else _csv(codecs, "codecs")
    unknown = [c for c in codec_names if c not in ev.CODECS]
    if unknown:
        raise click.BadParameter(f"unknown codec(s) {', '.join(unknown)}; known: {', '.join(ev.CODECS)}",
                                 param_hint="--codecs")
    with open_movie(input) as m:
        frames = np.stack([m.frame(i) for i in range(min(len(m), n_frames or len(m)))])
    truth = None
    if clean is not None:
        if not clean.exists():
            raise click.BadParameter(f"{clean}: no such file", param_hint="--clean")
        truth = _load_clean(clean)[: len(frames)]
        if truth.shape != frames.shape:
            raise click.ClickException(f"--clean has shape {truth.shape}, the movie {frames.shape}")
    if checkpoint is not None:
        dec_names = ev.with_checkpoint(dec_names, checkpoint)
    name = name or input.stem
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    t0 = time.perf_counter()
    rows = ev.evaluate(frames, truth, Bs, dec_names, codec_names, seed=seed, quant_step=quant_step, name=name,
                       tv=tv, tv_iterations=tv_iterations, bit_depth=int(bit_depth) if bit_depth else None,
                       clean_scale=None if clean_scale == "none" else clean_scale, device=device,
                       threads=threads, log=log)
    meta = {"input": str(input), "clean": str(clean) if clean else None, "shape": list(frames.shape),
            "dtype": frames.dtype.name, "B": Bs, "decoders": dec_names, "codecs": codec_names, "seed": seed,
            "quant_step": quant_step, "checkpoint": str(checkpoint) if checkpoint else None,
            "command": "tcscodec " + " ".join(sys.argv[1:]), "seconds": round(time.perf_counter() - t0, 1)}
    if out_dir is not None:
        paths = ev.save_report(out_dir, rows, frames, truth, title=f"tcscodec eval: {name}", meta=meta)
        if log:
            log("wrote " + ", ".join(str(p) for p in paths.values()))
    if as_json:
        click.echo(json.dumps(ev.rows_to_json(rows, **meta), indent=1))
    else:
        click.echo(ev.summary_table(rows))
        if len(Bs) >= 2:
            click.echo("Bjøntegaard deltas over the B swept:\n\n" + ev.bd_table(rows) + "\n")
        click.echo(ev.markdown_table(rows))
