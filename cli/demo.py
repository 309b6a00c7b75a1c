"""``tcscodec demo``: encode, inspect and decode the built-in sample movie."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from .commands import decode, encode, info
from .common import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("-B", "B", type=click.IntRange(2, 64), default=10, show_default=True, help="Frames per measurement.")
@click.option("--size", type=click.IntRange(32, 4096), default=256, show_default=True, help="Frame size (pixels).")
@click.option("--frames", "n_frames", type=click.IntRange(2, 10000), default=40, show_default=True,
              help="Number of frames.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated movie.")
@click.option("--decoder", help="Decoder [best available].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for sample.tif, sample.tcs, decoded.tif [a temporary folder].")
def demo(B, size, n_frames, seed, decoder, out_dir):
    """Simulate an in-situ HRTEM movie, encode it, show its info, decode it,
    and report the real compression ratio and the PSNR against the clean truth."""
    import tifffile

    from tcscodec.decoders import default_decoder
    from tcscodec.evaluation import naive_decode
    from tcscodec.metrics import psnr
    from tcscodec.simulate import sample_movie

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tcscodec-demo-")
        out_dir = Path(tmp.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    decoder = decoder or default_decoder()
    try:
        click.echo(f"1/4 simulating a {n_frames}-frame {size}x{size} HRTEM movie (seed {seed})")
        movie = sample_movie(shape=(size, size), n_frames=n_frames, seed=seed)
        src = out_dir / "sample.tif"
        tifffile.imwrite(src, movie.frames)
        tcs, dec = out_dir / "sample.tcs", out_dir / "decoded.tif"
        ctx = click.get_current_context()
        click.echo(f"2/4 tcscodec encode {src.name} -B {B} -o {tcs.name}")
        # every option spelled out: an option added to a command is then a choice made here
        ctx.invoke(encode, inputs=(src,), B=B, min_B=None, max_B=None, auto_tolerance=None, output=tcs,
                   seed=None, tile=512, quantize="auto", device="cpu", codec="predict-rice", level=3,
                   meta=("demo=true",), signal=None, jobs=1, threads=os.cpu_count() or 1, force=True, quiet=True)
        click.echo(f"3/4 tcscodec info {tcs.name}")
        ctx.invoke(info, file=tcs, as_json=False, with_motion=False)
        click.echo(f"4/4 tcscodec decode {tcs.name} -o {dec.name} --decoder {decoder}")
        t0 = time.perf_counter()
        ctx.invoke(decode, file=tcs, output=dec, decoder=decoder, device="cpu", frames=None, region=None,
                   dtype="float32", tile=None, overlap=None, motion="auto", threads=os.cpu_count() or 1,
                   workers=None, scheduler=None, skip_damaged=False, force=True, quiet=False)
        dt = time.perf_counter() - t0
        decoded = tifffile.imread(dec)
        clean = movie.clean
        naive = naive_decode(tcs)  # each group's Y / sum(C), the same for all its frames
        ratio = movie.frames.nbytes / tcs.stat().st_size
        click.echo(
            f"report: ratio {ratio:.1f}x real | PSNR vs clean: {decoder} {psnr(decoded, clean):.2f} dB, "
            f"raw frames {psnr(movie.frames, clean):.2f} dB, Y/sum(C) {psnr(naive, clean):.2f} dB | "
            f"decode {1000 * dt / n_frames:.0f} ms/frame"
        )
        if tmp is None:
            click.echo(f"files in {out_dir}")
    finally:
        if tmp is not None:
            tmp.cleanup()
